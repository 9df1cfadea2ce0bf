//! The generic row operations against real SQLite and real MariaDB
//! (`CLOUDPODS_TEST_MYSQL`; a missing server fails the tests).

use cloudpods_db::crud::{self, ListSpec, Order};
use cloudpods_db::migrate::{Migration, sync_schema};
use cloudpods_db::{Column, Db, Dialect, ModelDesc, Owner};
use serde_json::{Value, json};

fn desc() -> ModelDesc {
    ModelDesc::new("widget", "widgets", "widgets_tbl")
        .owner(Owner::Project)
        .standalone()
        .status("init")
        .col(Column::int("size").update().list())
        .col(Column::bool("flag").default(false))
        .col(Column::json("spec"))
        .col(Column::float("ratio"))
        .build()
}

async fn backends() -> Vec<(Db, Option<String>, tempfile::TempDir)> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    out.push((Db::connect(&url).await.expect("sqlite"), None, dir));
    {
        let base = cloudpods_testkit::mysql_url();
        let name = format!("cptest_db_{}", uuid_like());
        let url = format!("{}/{}", base.trim_end_matches('/'), name);
        let dir = tempfile::tempdir().expect("tempdir");
        out.push((Db::connect(&url).await.expect("mysql"), Some(name), dir));
    }
    out
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

async fn drop_db(db: &Db, name: Option<String>) {
    if let Some(name) = name {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE `{name}`")))
            .execute(db.write())
            .await;
    }
    db.close().await;
}

#[tokio::test]
async fn crud_round_trip_on_every_backend() {
    let d = desc();
    for (db, name, _dir) in backends().await {
        let add_col = Migration {
            version: 1,
            name: "noop",
            statements: |_| vec![],
        };
        sync_schema(&db, &[&d], std::slice::from_ref(&add_col))
            .await
            .expect("schema");
        // Idempotent.
        sync_schema(&db, &[&d], &[add_col])
            .await
            .expect("schema again");

        for i in 0..5 {
            let mut row = json!({"name": format!("w{i}"), "tenant_id": "p1", "size": i, "flag": i % 2 == 0, "spec": {"a": [i]}, "ratio": 0.5})
                .as_object()
                .cloned()
                .expect("obj");
            crud::prepare_insert(&d, &mut row);
            crud::insert(db.write(), &d, &row).await.expect("insert");
        }
        let spec = ListSpec {
            conds: vec![crud::eq("tenant_id", "p1")],
            order: vec![("size".into(), Order::Desc)],
            limit: Some(2),
            offset: 1,
            count: true,
            ..Default::default()
        };
        let (rows, total) = crud::list(&db, &d, &spec).await.expect("list");
        assert_eq!(total, Some(5));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["size"], json!(3));
        assert_eq!(rows[0]["flag"], json!(false));
        assert_eq!(rows[1]["flag"], json!(true));
        assert_eq!(rows[0]["spec"], json!({"a": [3]}));
        assert_eq!(rows[0]["status"], json!("init"));
        assert_eq!(rows[0]["ratio"], json!(0.5));
        // Case-insensitive names on both backends.
        let (by_name, _) = crud::list(
            &db,
            &d,
            &ListSpec {
                conds: vec![crud::eq("name", "W1")],
                ..Default::default()
            },
        )
        .await
        .expect("by name");
        assert_eq!(by_name.len(), 1, "{:?}", db.dialect() == Dialect::Sqlite);

        let id = rows[0]["id"].as_str().expect("id").to_string();
        let changes = json!({"size": 42, "status": "ready"})
            .as_object()
            .cloned()
            .expect("obj");
        assert_eq!(
            crud::update(db.write(), &d, &id, &changes)
                .await
                .expect("update"),
            1
        );
        let got = crud::must_get(db.read(), &d, &id).await.expect("get");
        assert_eq!(got["size"], json!(42));
        assert_eq!(got["update_version"], json!(1));
        assert_eq!(crud::delete(db.write(), &d, &id).await.expect("delete"), 1);
        assert!(crud::get(db.read(), &d, &id).await.expect("get").is_none());
        assert_eq!(
            crud::delete(db.write(), &d, &id)
                .await
                .expect("delete twice"),
            0
        );
        let sum = crud::fetch_i64(
            db.read(),
            &cloudpods_db::Sql::new(format!(
                "SELECT {} FROM `widgets_tbl` WHERE `deleted` = 0",
                db.dialect().sum_int("`size`")
            )),
        )
        .await
        .expect("sum");
        assert_eq!(sum, 7, "0 + 1 + 2 + 4 after one row was deleted");
        let _ = Value::Null;
        drop_db(&db, name).await;
    }
}
