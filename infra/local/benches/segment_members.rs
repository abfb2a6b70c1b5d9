//! Reading a segment's members from its sharded index on the local run (moto): writes N member
//! items as the writers do (one per lead, spread over the 16 shards by lead id), then reads them
//! back the way `segment show`, `segment export` and the Monday routine do, counting the
//! requests. `cargo bench -p leadflow-local --bench segment_members -- 10000`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use chrono::Utc;
use leadflow_aws::config::Clients;
use leadflow_aws::keys;
use leadflow_aws::segments::{DynamoSegmentMembers, SegmentMember};
use leadflow_aws::table::record_item;
use leadflow_domain::records::{ContactId, LeadId};
use leadflow_local::{Emulator, Stack};

#[derive(Debug, Clone, Default)]
struct Count(Arc<AtomicUsize>);

impl Intercept for Count {
    fn name(&self) -> &'static str {
        "Count"
    }
    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let emulator = Emulator::start().expect("start moto (scripts/setup.sh first)");
    let sdk = leadflow_aws::config::emulator_sdk_config(&emulator.endpoint).await;
    let count = Count::default();
    let clients = Clients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(count.clone())
                .build(),
        ),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        sesv2: aws_sdk_sesv2::Client::new(&sdk),
        eventbridge: aws_sdk_eventbridge::Client::new(&sdk),
        secretsmanager: aws_sdk_secretsmanager::Client::new(&sdk),
    };
    let stack = Stack::stand_up_with(clients, "bench-", "http://127.0.0.1")
        .await
        .expect("stand up the stack");
    let table = stack.table().expect("the records table");
    let now = Utc::now();
    let why = "1 ✓ interactions page_viewed within 30 days >= 15: 16; 2 ✓ interactions form_submitted >= 1: 1; \
               3 ✗ activities >= 1: 0; 4 ✓ email exists ✓, relationship not_equals competitor ✓, nurture is_true ✓";
    let items: Vec<_> = (0..n)
        .map(|_| {
            let lead = LeadId::generate();
            let member = SegmentMember {
                lead_id: lead,
                contact_id: ContactId::generate(),
                joined_at: now,
                why: why.to_owned(),
            };
            record_item(&member, keys::segment_member("hot", lead), "segment_member").expect("an item")
        })
        .collect();
    table.write_many(items, vec![]).await.expect("write the members");
    let before = count.0.load(Ordering::Relaxed);
    let started = Instant::now();
    let members = DynamoSegmentMembers::new(table)
        .all("hot")
        .await
        .expect("read the members");
    let took = started.elapsed();
    let requests = count.0.load(Ordering::Relaxed) - before;
    assert_eq!(members.len(), n);
    let item_bytes = serde_json::to_string(&members[0]).map_or(0, |s| s.len());
    println!(
        "{n} members read in {:.2} s ({:.0} members/s), {requests} Query requests ({} shards), ~{item_bytes} bytes a member",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        keys::SEGMENT_SHARDS
    );
}
