//! Task tables.

use std::sync::LazyLock;

use cloudpods_db::{Column, IdStyle, ModelDesc, Owner, TypedRow};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn task_desc(keyword: &'static str, plural: &'static str, table: &'static str) -> ModelDesc {
    ModelDesc::new(keyword, plural, table)
        .service("compute")
        .owner(Owner::Project)
        .hard_delete()
        .col(Column::str("obj_type", 40).list().indexed())
        .col(Column::str("obj_id", 128).list().indexed())
        .col(Column::str("object", 128).list().search())
        .col(Column::str("task_name", 64).list().indexed())
        .col(Column::json("params"))
        .col(Column::json("state"))
        .col(Column::str("stage", 64).list())
        .col(Column::str("status", 24).list().indexed())
        .col(Column::json("done_steps"))
        .col(Column::str("failed_step", 64))
        .col(Column::text("reason"))
        .col(Column::json("callback"))
        .col(Column::int("attempt").default(0))
        .col(Column::float("progress").default(0))
        .col(Column::time("start_at"))
        .col(Column::time("end_at"))
        .col(Column::str("parent_task_id", 64).list().indexed())
        .col(Column::str("parent_stage", 64))
        .col(Column::str("user_id", 64).list())
        .col(Column::str("user", 128))
        .col(Column::json("user_cred"))
        .col(Column::str("lease_owner", 128))
        .col(Column::time("lease_until"))
        .col(Column::time("wait_until"))
        .col(Column::bool("cancel_requested").default(false))
        .col(Column::str("request_id", 64))
        .index(&["status", "lease_until"])
        .build()
}

/// Live tasks (`tasks_tbl`, as Cloudpods names it).
pub static TASKS: LazyLock<ModelDesc> = LazyLock::new(|| task_desc("task", "tasks", "tasks_tbl"));

/// Finished tasks moved out of the live table.
pub static ARCHIVED_TASKS: LazyLock<ModelDesc> =
    LazyLock::new(|| task_desc("archivedtask", "archivedtasks", "archived_tasks_tbl"));

/// Objects of multi-object tasks (batch create).
pub static TASK_OBJECTS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("taskobject", "taskobjects", "taskobjects_tbl")
        .ids(IdStyle::Auto)
        .hard_delete()
        .col(Column::str("task_id", 64).indexed())
        .col(Column::str("obj_id", 128).indexed())
        .build()
});

pub fn all() -> Vec<&'static ModelDesc> {
    vec![&TASKS, &ARCHIVED_TASKS, &TASK_OBJECTS]
}

/// A live task as the engine reads it (`tasks_tbl`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskRow {
    pub id: String,
    pub task_name: String,
    pub obj_type: String,
    pub obj_id: String,
    /// The object's name.
    pub object: String,
    pub params: Value,
    pub state: Map<String, Value>,
    pub stage: String,
    pub status: String,
    pub done_steps: Vec<String>,
    pub failed_step: String,
    pub reason: String,
    /// A posted result waiting for the step, or null.
    pub callback: Value,
    pub attempt: i64,
    pub parent_task_id: String,
    pub parent_stage: String,
    pub user_cred: Value,
    pub lease_owner: String,
    pub cancel_requested: bool,
}

impl TypedRow for TaskRow {
    fn desc() -> &'static ModelDesc {
        &TASKS
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn task_row_names_only_columns() {
        let wrong = cloudpods_db::typed::check_columns::<super::TaskRow>();
        assert!(wrong.is_empty(), "fields that are not columns: {wrong:?}");
    }
}
