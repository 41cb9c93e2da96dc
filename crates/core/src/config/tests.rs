use super::*;

#[test]
fn durations_parse_in_every_documented_unit() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("40").unwrap(), Duration::from_millis(40));
    assert_eq!(
        parse_duration("90d").unwrap(),
        Duration::from_secs(90 * 86_400)
    );
    assert!(parse_duration("5 parsecs").is_err());
}

#[test]
fn secrets_never_show_in_debug_output() {
    let s = Secret::new("EAAG-very-secret");
    assert_eq!(format!("{s:?}"), "[redacted]");
}

#[test]
fn defaults_validate() {
    Settings::default().validate().unwrap();
}

#[test]
fn retention_is_off_by_default_and_at_least_a_day() {
    let mut s = Settings::default();
    assert_eq!(s.retention.messages, None);
    s.retention.messages = Some(Duration::from_secs(3600));
    assert!(s.validate().is_err());
    s.retention.messages = Some(parse_duration("30d").unwrap());
    s.validate().unwrap();
}
