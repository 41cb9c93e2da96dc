//! The private PostgreSQL server really stops and starts again on the same data.

use wafleet_nodes::PrivatePostgres;

#[tokio::test]
async fn a_private_postgres_keeps_its_rows_across_a_stop_and_start() {
    let mut pg = PrivatePostgres::start(20)
        .await
        .expect("private PostgreSQL");
    let url = pg.admin_url();
    let psql = |sql: &str| {
        let out = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
            .args([url.as_str(), "-XAtqc", sql])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    psql("CREATE TABLE t (n int); INSERT INTO t VALUES (7)");
    pg.stop().await.expect("stop");
    assert_eq!(psql("SELECT n FROM t"), "", "nothing answers while stopped");
    pg.start_again().await.expect("start again");
    assert_eq!(psql("SELECT n FROM t"), "7");
}
