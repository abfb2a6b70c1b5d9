//! The local emulator keeps DynamoDB's transaction semantics while snapshotting only the items
//! a transaction touches (infra/local/moto_serial.py): a cancelled transaction leaves nothing
//! of itself behind, item by item.

use leadflow_aws::table::{plain_item, s, Condition, Transact, Update};
use leadflow_tests::TestEnv;

#[tokio::test]
async fn a_cancelled_transaction_leaves_nothing_behind() {
    let env = TestEnv::new().await;
    let table = env.stack.table().unwrap();
    let existing = ("EMU#existing".to_owned(), "X".to_owned());
    table
        .put(
            plain_item(existing.clone(), "test", &[("v", "before".into())]),
            Condition::none(),
        )
        .await
        .unwrap();
    let new = ("EMU#new".to_owned(), "X".to_owned());
    let items = vec![
        // Written first, then undone: a new item and a change to an existing one.
        table
            .put_tx(
                plain_item(new.clone(), "test", &[("v", "new".into())]),
                Condition::absent(),
            )
            .unwrap(),
        table
            .update_tx(existing.clone(), Update::new().set("v", s("changed")))
            .unwrap(),
        // Fails: the item does not exist.
        table
            .update_tx(
                ("EMU#missing".to_owned(), "X".to_owned()),
                Update::new().set("v", s("x")).if_exists(),
            )
            .unwrap(),
    ];
    let outcome = table.transact(items, None).await.unwrap();
    assert_eq!(outcome, Transact::Cancelled(vec![false, false, true]));
    assert!(table.get(new).await.unwrap().is_none(), "the new item is gone");
    let kept = table.get(existing.clone()).await.unwrap().unwrap();
    assert_eq!(kept["v"].as_s().unwrap(), "before", "the change is undone");

    // The same item twice in one transaction is refused whole, as DynamoDB does.
    let twice = vec![
        table
            .update_tx(existing.clone(), Update::new().set("v", s("a")))
            .unwrap(),
        table
            .update_tx(existing.clone(), Update::new().set("v", s("b")))
            .unwrap(),
    ];
    assert!(table.transact(twice, None).await.is_err());
    let kept = table.get(existing).await.unwrap().unwrap();
    assert_eq!(kept["v"].as_s().unwrap(), "before");
}

/// An item's counter `c` and first value `first`.
fn c_and_first(item: &leadflow_aws::table::Item) -> (&str, &str) {
    (
        item["c"].as_n().unwrap().as_str(),
        item["first"].as_s().unwrap().as_str(),
    )
}

/// Plain updates (`SET #a = :v, #m.#f = :v, #n = #n + :v, #k = if_not_exists(#k, :v) REMOVE #b
/// ADD #c :v`) are applied by the emulator directly; everything else goes moto's way. Both must behave as DynamoDB does: conditions, a field of a
/// map that is not there, key attributes, and undo when a transaction is cancelled.
#[tokio::test]
async fn plain_and_other_updates_keep_dynamodb_semantics() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let env = TestEnv::new().await;
    let table = env.stack.table().unwrap();
    let key = ("EMU#upd".to_owned(), "X".to_owned());
    let map = AttributeValue::M([("a".to_owned(), s("1"))].into());
    // Creates the item (an update of an absent item does), then changes and removes.
    let created = table
        .update(key.clone(), Update::new().set("m", map).set("gone", s("x")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created["pk"].as_s().unwrap(), "EMU#upd");
    let after = table
        .update(
            key.clone(),
            Update::new()
                .set_in("m", "b", s("2"))
                .remove("gone")
                .when("attribute_exists(pk)", &[]),
        )
        .await
        .unwrap()
        .unwrap();
    let m = after["m"].as_m().unwrap();
    assert_eq!(
        (m["a"].as_s().unwrap().as_str(), m["b"].as_s().unwrap().as_str()),
        ("1", "2")
    );
    assert!(!after.contains_key("gone"));
    // A condition that does not hold changes nothing.
    let refused = table
        .update(
            key.clone(),
            Update::new().set("v", s("no")).when("{v} = :x", &[(":x", s("yes"))]),
        )
        .await
        .unwrap();
    assert!(refused.is_none());
    assert!(!table.get(key.clone()).await.unwrap().unwrap().contains_key("v"));
    // A field of a map the item does not have, and a key attribute: refused as DynamoDB does.
    assert!(table
        .update(key.clone(), Update::new().set_in("nomap", "f", s("x")))
        .await
        .is_err());
    assert!(table
        .update(key.clone(), Update::new().set("sk", s("Y")))
        .await
        .is_err());

    // Counters and first values: ADD creates and adds, `n = n + v` needs a number there,
    // if_not_exists keeps the first value; a string is not a counter.
    let counted = table
        .update(
            key.clone(),
            Update::new()
                .add("c", 2)
                .set_if_absent("first", s("a"))
                .when("attribute_exists(pk)", &[]),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c_and_first(&counted), ("2", "a"));
    let counted = table
        .update(
            key.clone(),
            Update::new()
                .add("c", -5)
                .increment("c2", 1)
                .set_if_absent("first", s("b")),
        )
        .await;
    assert!(counted.is_err(), "c2 + 1 with no c2 is refused");
    let counted = table
        .update(key.clone(), Update::new().add("c", -5).set_if_absent("first", s("b")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c_and_first(&counted), ("-3", "a"));
    let counted = table
        .update(key.clone(), Update::new().increment("c", 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted["c"].as_n().unwrap(), "7");
    assert!(table.update(key.clone(), Update::new().add("first", 1)).await.is_err());
    assert!(table
        .update(key.clone(), Update::new().increment("first", 1))
        .await
        .is_err());
    let fresh = table
        .update(
            ("EMU#counter".to_owned(), "X".to_owned()),
            Update::new().add("n", 1).add("m", 3),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (fresh["n"].as_n().unwrap().as_str(), fresh["m"].as_n().unwrap().as_str()),
        ("1", "3")
    );
    let left = table.get(key.clone()).await.unwrap().unwrap();
    assert_eq!(left["c"].as_n().unwrap(), "7", "refused updates changed nothing");

    // A cancelled transaction undoes a plain update and one moto runs (adding to a decimal).
    let dec_key = ("EMU#dec".to_owned(), "X".to_owned());
    table
        .update(
            dec_key.clone(),
            Update::new().set("dec", AttributeValue::N("1.5".into())),
        )
        .await
        .unwrap();
    let items = vec![
        table
            .update_tx(key.clone(), Update::new().set_in("m", "a", s("changed")).add("n", 5))
            .unwrap(),
        table.update_tx(dec_key.clone(), Update::new().add("dec", 1)).unwrap(),
        table
            .update_tx(
                ("EMU#missing".to_owned(), "X".to_owned()),
                Update::new().set("v", s("x")).if_exists(),
            )
            .unwrap(),
    ];
    assert_eq!(
        table.transact(items, None).await.unwrap(),
        Transact::Cancelled(vec![false, false, true])
    );
    let dec = table.get(dec_key).await.unwrap().unwrap();
    assert_eq!(dec["dec"].as_n().unwrap(), "1.5", "moto's change is undone");
    let kept = table.get(key).await.unwrap().unwrap();
    assert_eq!(kept["m"].as_m().unwrap()["a"].as_s().unwrap(), "1");
    assert!(!kept.contains_key("n"), "the counter's change is undone");
}

/// The emulator answers queries from the partition they name (its own index maps, kept up to
/// date on every write), not by sorting the whole table: what an index holds must follow
/// puts, updates that move or drop the index key, deletes and cancelled transactions.
#[tokio::test]
async fn index_queries_follow_every_kind_of_write() {
    use leadflow_aws::keys::{Index, DUE_PK, DUE_SK};
    use leadflow_aws::table::Query;
    let env = TestEnv::new().await;
    let table = env.stack.table().unwrap();
    let due = |p: &str| Query::partition(Index::Due, p.to_owned());
    let skeys = |items: Vec<leadflow_aws::table::Item>| -> Vec<String> {
        items.iter().map(|i| i["sk"].as_s().unwrap().clone()).collect()
    };
    // The index is built on the first query, then maintained.
    assert!(table.query(due("EMU#A")).await.unwrap().is_empty());
    for (sk, at) in [("1", "2026-01-03"), ("2", "2026-01-01"), ("3", "2026-01-02")] {
        put_due(&table, "EMU#item", sk, "EMU#A", at).await;
    }
    assert_eq!(
        skeys(table.query(due("EMU#A")).await.unwrap()),
        ["2", "3", "1"],
        "in index order"
    );
    assert_eq!(
        skeys(table.query(due("EMU#A").at_most("2026-01-02")).await.unwrap()),
        ["2", "3"]
    );
    // An update moves an item to another index partition; another drops its index key.
    table
        .update(
            ("EMU#item".to_owned(), "1".to_owned()),
            Update::new().set(DUE_PK, s("EMU#B")),
        )
        .await
        .unwrap();
    table
        .update(
            ("EMU#item".to_owned(), "2".to_owned()),
            Update::new().remove(DUE_PK).remove(DUE_SK),
        )
        .await
        .unwrap();
    assert_eq!(skeys(table.query(due("EMU#A")).await.unwrap()), ["3"]);
    assert_eq!(skeys(table.query(due("EMU#B")).await.unwrap()), ["1"]);
    // A cancelled transaction that moved item 3 leaves it where it was.
    let items = vec![
        table
            .update_tx(
                ("EMU#item".to_owned(), "3".to_owned()),
                Update::new().set(DUE_PK, s("EMU#B")),
            )
            .unwrap(),
        table
            .update_tx(
                ("EMU#missing".to_owned(), "X".to_owned()),
                Update::new().set("v", s("x")).if_exists(),
            )
            .unwrap(),
    ];
    assert!(matches!(
        table.transact(items, None).await.unwrap(),
        Transact::Cancelled(_)
    ));
    assert_eq!(skeys(table.query(due("EMU#A")).await.unwrap()), ["3"]);
    assert_eq!(skeys(table.query(due("EMU#B")).await.unwrap()), ["1"]);
    // A delete leaves the index; a query of the table reads its partition only.
    table
        .delete(("EMU#item".to_owned(), "1".to_owned()), Condition::none())
        .await
        .unwrap();
    assert!(table.query(due("EMU#B")).await.unwrap().is_empty());
    assert_eq!(
        skeys(table.query(Query::partition(Index::Table, "EMU#item")).await.unwrap()),
        ["2", "3"]
    );
}

/// An index query with a limit builds only the items it can return: its pages, forward and
/// backward, with a sort-key condition, are exactly DynamoDB's.
#[tokio::test]
async fn index_pages_with_limits_and_start_keys_are_in_order() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use leadflow_aws::keys::{DUE_INDEX, DUE_PK, DUE_SK};
    let env = TestEnv::new().await;
    let table = env.stack.table().unwrap();
    let mut expected = Vec::new();
    for i in 0..23 {
        // Written out of order on purpose.
        let at = format!("2026-02-{:02}", (i * 7) % 23 + 1);
        let sk = format!("{i:02}");
        put_due(&table, "EMU#paged", &sk, "EMU#P", &at).await;
        expected.push((at, sk));
    }
    expected.sort();
    let client = &env.stack.clients.dynamodb;
    for forward in [true, false] {
        for upper in ["2026-02-30", "2026-02-12"] {
            let mut want: Vec<String> = expected
                .iter()
                .filter(|(at, _)| at.as_str() <= upper)
                .map(|(_, sk)| sk.clone())
                .collect();
            if !forward {
                want.reverse();
            }
            let mut got = Vec::new();
            let mut start = None;
            loop {
                let page = client
                    .query()
                    .table_name(table.name())
                    .index_name(DUE_INDEX)
                    .key_condition_expression("#p = :p AND #s <= :s")
                    .expression_attribute_names("#p", DUE_PK)
                    .expression_attribute_names("#s", DUE_SK)
                    .expression_attribute_values(":p", AttributeValue::S("EMU#P".into()))
                    .expression_attribute_values(":s", AttributeValue::S(upper.into()))
                    .scan_index_forward(forward)
                    .limit(4)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .unwrap();
                assert!(page.items().len() <= 4);
                got.extend(page.items().iter().map(|i| i["sk"].as_s().unwrap().clone()));
                start = page.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
            assert_eq!(got, want, "forward {forward}, up to {upper}");
        }
    }
}

/// An item with an entry in the `due` index.
async fn put_due(table: &leadflow_aws::table::Table, pk: &str, sk: &str, due_pk: &str, due_sk: &str) {
    use leadflow_aws::keys::{DUE_PK, DUE_SK};
    table
        .put(
            plain_item(
                (pk.to_owned(), sk.to_owned()),
                "test",
                &[(DUE_PK, due_pk.into()), (DUE_SK, due_sk.into())],
            ),
            Condition::none(),
        )
        .await
        .unwrap();
}

/// The emulator's own drain call (the local events page reads its capture queue with it):
/// what a receive would return (visible, not delayed), oldest first, at most `max`, each once;
/// a message in flight stays with its receiver, one whose visibility ran out is taken.
#[tokio::test]
async fn a_drain_takes_what_a_receive_would_once_and_leaves_messages_in_flight() {
    let env = TestEnv::new().await;
    let sqs = &env.stack.clients.sqs;
    let name = format!("drain-{}", uuid::Uuid::new_v4().simple());
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let send = |body: &'static str| sqs.send_message().queue_url(&url).message_body(body).send();
    let receive = || async {
        sqs.receive_message()
            .queue_url(&url)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    };
    // Received and kept: in flight. Received and given back: visible again.
    send("in flight").await.unwrap();
    let held = receive().await;
    assert_eq!(held[0].body(), Some("in flight"));
    send("given back").await.unwrap();
    let back = receive().await;
    assert_eq!(back[0].body(), Some("given back"));
    sqs.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(back[0].receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    send("b").await.unwrap();
    send("c").await.unwrap();
    sqs.send_message()
        .queue_url(&url)
        .message_body("delayed")
        .delay_seconds(60)
        .send()
        .await
        .unwrap();

    let http = reqwest::Client::new();
    let drain_url = format!("{}{}", leadflow_tests::endpoint(), leadflow_local::DRAIN_PATH);
    let drain = |max: &str| {
        let req = http.post(&drain_url).query(&[("url", url.as_str()), ("max", max)]);
        async move {
            let answer = req.send().await.unwrap();
            let status = answer.status().as_u16();
            let v: serde_json::Value = answer.json().await.unwrap();
            let bodies = v["Messages"]
                .as_array()
                .map(|a| a.iter().map(|m| m.as_str().unwrap().to_owned()).collect::<Vec<_>>());
            (status, bodies)
        }
    };
    assert_eq!(
        drain("2").await,
        (200, Some(vec!["given back".to_owned(), "b".to_owned()])),
        "at most max, oldest first"
    );
    assert_eq!(
        drain("1000").await,
        (200, Some(vec!["c".to_owned()])),
        "neither in flight nor delayed"
    );
    assert_eq!(drain("1000").await, (200, Some(vec![])), "each once");
    assert_eq!(drain("0").await.0, 400);
    assert_eq!(drain("many").await.0, 400);

    // The message in flight is still its receiver's to delete; the one taken after it was given
    // back is gone as if deleted (its old receipt handle is accepted, as SQS accepts a delete twice).
    for m in [&held[0], &back[0]] {
        sqs.delete_message()
            .queue_url(&url)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .expect("deleted");
    }
    assert!(receive().await.is_empty(), "only the delayed message is left");

    // A queue that does not exist is a 404, not an empty answer.
    let missing = http
        .post(&drain_url)
        .query(&[(
            "url",
            format!("{}/123456789012/no-such-queue", leadflow_tests::endpoint()),
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
