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
