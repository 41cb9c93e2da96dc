-- A kept count of each tenant's `cap_recipients` rows, so a cap reservation reads one row
-- instead of counting the whole 24 h set on every batch (at tier 100,000 that set is large).
-- Statement-level triggers keep it exact whoever writes the set (reservations, the ageing-out
-- delete, slots given back by the dispatcher or the webhook consumer): one UPDATE per
-- statement, from the transition table. An INSERT … ON CONFLICT DO UPDATE counts only the rows
-- it really inserted (a renewed slot is not a new one).
CREATE TABLE cap_usage (
    tenant_id uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    used      integer NOT NULL DEFAULT 0 CHECK (used >= 0)
);

INSERT INTO cap_usage (tenant_id, used)
SELECT tenant_id, count(*) FROM cap_recipients GROUP BY tenant_id;

CREATE FUNCTION cap_usage_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO cap_usage (tenant_id, used)
        SELECT tenant_id, count(*) FROM inserted GROUP BY tenant_id
        ON CONFLICT (tenant_id) DO UPDATE SET used = cap_usage.used + EXCLUDED.used;
    ELSE
        UPDATE cap_usage u SET used = u.used - d.n
        FROM (SELECT tenant_id, count(*) AS n FROM deleted GROUP BY tenant_id) d
        WHERE u.tenant_id = d.tenant_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER cap_usage_on_insert AFTER INSERT ON cap_recipients
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION cap_usage_count();
CREATE TRIGGER cap_usage_on_delete AFTER DELETE ON cap_recipients
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION cap_usage_count();
