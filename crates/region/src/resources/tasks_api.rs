//! Tasks over the API: `GET /tasks`, `GET /archivedtasks`, agent callbacks
//! `POST /tasks/{id}` and `POST /tasks/{id}/cancel`.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::Method;
use cloudpods_db::{ModelDesc, Row, Sql};
use cloudpods_rest::dispatch::ok_json;
use cloudpods_rest::params::{Object, get_str};
use cloudpods_rest::{ApiRequest, Ctx, HttpError, Model, Result, Service};
use cloudpods_taskman::models::{ARCHIVED_TASKS, TASKS};
use serde_json::{Value, json};

use crate::Region;
use crate::store::s;

pub struct Tasks {
    desc: &'static ModelDesc,
    region: Arc<Region>,
}

#[async_trait]
impl Model for Tasks {
    region_model!(field);

    async fn list_filter(
        &self,
        _ctx: &Ctx,
        q: &Object,
        _scope: cloudpods_rbac::Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        if let Some(open) = cloudpods_rest::params::get_bool(q, "is_open")? {
            let mut c = Sql::new(if open {
                "`status` NOT IN "
            } else {
                "`status` IN "
            });
            c.bind_list(["complete", "failed"]);
            conds.push(c);
        }
        if let Some(obj) = get_str(q, "obj_id") {
            // Batch tasks list every object they drive.
            let mut c =
                Sql::new("`id` IN (SELECT `task_id` FROM `taskobjects_tbl` WHERE `obj_id` = ");
            c.bind(obj).push(")");
            conds.push(c);
        }
        Ok(())
    }

    async fn delete(&self, _ctx: &Ctx, _obj: Row, _q: &Object) -> Result<Row> {
        Err(HttpError::not_supported(
            "tasks cannot be deleted; cancel them",
        ))
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        match action {
            "cancel" => {
                let id = s(&obj, "id");
                if !self
                    .region
                    .engine
                    .cancel(&id)
                    .await
                    .map_err(|e| HttpError::internal(e.0))?
                {
                    return Err(HttpError::invalid_status(format!(
                        "task {id} has already finished"
                    )));
                }
                Ok(Value::Object(
                    cloudpods_db::crud::must_get(self.region.db.read(), &TASKS, &id).await?,
                ))
            }
            _ => cloudpods_rest::generic::perform_common(self, ctx, obj, action, input).await,
        }
    }
}

pub fn register(svc: Service, region: &Arc<Region>) -> Service {
    let r = region.clone();
    svc.model(Arc::new(Tasks {
        desc: &TASKS,
        region: region.clone(),
    }))
    .model(Arc::new(Tasks {
        desc: &ARCHIVED_TASKS,
        region: region.clone(),
    }))
    // Agent callbacks. Authenticated only by the signature in the notify
    // URL, bound to the task and its current step (agents need no account).
    .route(Method::POST, "/tasks/{task_id}", false, move |req| {
        let r = r.clone();
        async move { callback(r, req).await }
    })
}

async fn callback(region: Arc<Region>, mut req: ApiRequest) -> Result<axum::response::Response> {
    let task_id = req.param("task_id").to_string();
    let stage = get_str(&req.query, "stage");
    // The signed key is the only credential a callback has: a user token
    // (every tenant has one) never completes a step.
    let Some(key) = get_str(&req.query, "key") else {
        return Err(HttpError::unauthorized(
            "agent callbacks must carry the signed key of their notify URL",
        ));
    };
    let key = Some(key);
    let body = req.json().await?.unwrap_or(json!({}));
    // Cloudpods agents wrap nothing; accept `{"task": {...}}` too.
    let data = match body {
        Value::Object(mut o) if o.len() == 1 && o.contains_key("task") => {
            o.remove("task").unwrap_or(Value::Null)
        }
        other => other,
    };
    let accepted = region
        .engine
        .callback(&task_id, stage.as_deref(), key.as_deref(), data)
        .await
        .map_err(|e| {
            if e.0.contains("not found") {
                HttpError::not_found(e.0)
            } else if e.0.contains("signature") {
                HttpError::forbidden(e.0)
            } else {
                HttpError::internal(e.0)
            }
        })?;
    Ok(ok_json(
        json!({"task": {"id": task_id, "accepted": accepted}}),
    ))
}
