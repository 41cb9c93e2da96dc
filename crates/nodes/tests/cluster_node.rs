//! The private cluster really is one: three nodes, a quorum queue on all of them, and the
//! front door still takes connections while the queue's leader is stopped.

use wafleet_nodes::PrivateCluster;

#[tokio::test]
async fn a_private_cluster_keeps_serving_through_its_front_door_while_the_leader_is_stopped() {
    let mut cluster = PrivateCluster::start(3).await.expect("private cluster");
    let url = cluster.amqp_url();
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("connect through the front door");
    let channel = conn.create_channel().await.expect("channel");
    let mut args = lapin::types::FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            "cluster-test.q".into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .expect("declare a quorum queue");
    let _ = conn.close(0, "done".into()).await;

    let leader = cluster.leader_of("cluster-test.").await.expect("leader");
    cluster.stop(leader).await.expect("stop the leader");
    let again = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("the front door finds a node that is up");
    let channel = again.create_channel().await.expect("channel");
    channel
        .queue_declare(
            "cluster-test.q".into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("the queue is still there, on the other nodes");
    let new_leader = cluster.leader_of("cluster-test.").await.expect("leader");
    assert_ne!(new_leader, leader, "another node took the lead");
    cluster
        .start_again(leader)
        .await
        .expect("the old leader rejoins");
}
