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
