//! The scheduler's REST API (Cloudpods `pkg/scheduler/handler`): every
//! route under `/scheduler`. Handlers parse, authorize and call the
//! service; nothing else.

use std::sync::Arc;

use axum::http::Method;
use axum::response::Response;
use cloudpods_apis::scheduler::ScheduleInput;
use cloudpods_rbac::Scope;
use cloudpods_rest::dispatch::ok_json;
use cloudpods_rest::params::{Object, get_bool, get_i64, get_str};
use cloudpods_rest::{ApiRequest, Ctx, HttpError, Result, Service, TenantCache, TokenVerifier};
use serde_json::{Value, json};

use crate::service::{CandidateQuery, SchedulerService};

/// Scheduler operations other than forecast are for the region (and
/// system administrators): they hold capacity or show the whole fleet.
fn require_system(ctx: &Ctx, action: &str) -> Result<()> {
    if ctx.max_scope("schedulers", "perform", Some(action)) == Some(Scope::System) {
        Ok(())
    } else {
        Err(HttpError::forbidden(format!(
            "{} may not use scheduler {action}: system administrators only",
            ctx.identity.user
        )))
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| HttpError::internal(e.to_string()))
}

/// Query parameters, with a JSON body's fields on top (Cloudpods' clients
/// POST these).
async fn params(req: &mut ApiRequest) -> Result<Object> {
    let mut p = req.query.clone();
    if let Some(Value::Object(o)) = req.json().await? {
        p.extend(o);
    }
    Ok(p)
}

fn usize_param(p: &Object, key: &str) -> Result<usize> {
    match get_i64(p, key)? {
        None => Ok(0),
        Some(v) if v < 0 => Err(HttpError::input(format!("{key} must not be negative"))),
        Some(v) => Ok(v as usize),
    }
}

async fn input_of(req: &mut ApiRequest) -> Result<ScheduleInput> {
    let body = req.json().await?.unwrap_or(Value::Null);
    ScheduleInput::from_json(body)
        .map_err(|e| HttpError::input(format!("invalid schedule input: {e}")))
}

async fn schedule(s: Arc<SchedulerService>, mut req: ApiRequest) -> Result<Response> {
    require_system(req.ctx()?, "schedule")?;
    let mut input = input_of(&mut req).await?;
    let ctx = req.ctx()?;
    if input.project.is_empty() {
        input.project = ctx.identity.project_id.clone();
    }
    if input.project_domain.is_empty() {
        input.project_domain = ctx.identity.domain_id.clone();
    }
    let candidates = s.schedule(&input).await?;
    Ok(ok_json(json!({"candidates": candidates})))
}

async fn forecast(s: Arc<SchedulerService>, mut req: ApiRequest) -> Result<Response> {
    let admin = {
        let ctx = req.ctx()?;
        let admin = ctx.max_scope("schedulers", "perform", Some("forecast")) == Some(Scope::System);
        if !admin && ctx.max_scope("servers", "create", None).is_none() {
            return Err(HttpError::forbidden(format!(
                "{} may not create servers",
                ctx.identity.user
            )));
        }
        admin
    };
    let mut input = input_of(&mut req).await?;
    let ctx = req.ctx()?;
    if !admin || input.project.is_empty() {
        // A tenant asks for its own project: which hosts its project may
        // use, not someone else's.
        input.project = ctx.identity.project_id.clone();
        input.project_domain = ctx.identity.domain_id.clone();
    }
    let mut out = s.try_forecast(&input).await?;
    if !admin {
        // Host names and ids are infrastructure details: tenants see the
        // answer and the aggregated reasons only.
        out.candidates.clear();
        out.filtered_candidates.clear();
    }
    Ok(ok_json(to_json(&out)?))
}

async fn candidate_list(s: Arc<SchedulerService>, mut req: ApiRequest) -> Result<Response> {
    require_system(req.ctx()?, "candidate-list")?;
    let p = params(&mut req).await?;
    let q = CandidateQuery {
        zone: get_str(&p, "zone").unwrap_or_default(),
        region: get_str(&p, "region").unwrap_or_default(),
        host_type: get_str(&p, "type").unwrap_or_default(),
        available: get_bool(&p, "available")?.unwrap_or(false),
        limit: usize_param(&p, "limit")?,
        offset: usize_param(&p, "offset")?,
    };
    Ok(ok_json(to_json(&s.candidate_list(&q))?))
}

async fn candidate_detail(s: Arc<SchedulerService>, req: ApiRequest) -> Result<Response> {
    require_system(req.ctx()?, "candidate-detail")?;
    let id = req.param("id");
    let d = s
        .candidate_detail(id)
        .ok_or_else(|| HttpError::not_found(format!("candidate {id} not found")))?;
    Ok(ok_json(json!({"candidate": to_json(&d)?})))
}

async fn history_list(s: Arc<SchedulerService>, mut req: ApiRequest) -> Result<Response> {
    require_system(req.ctx()?, "history-list")?;
    let p = params(&mut req).await?;
    let list = s.history_list(usize_param(&p, "offset")?, usize_param(&p, "limit")?);
    Ok(ok_json(to_json(&list)?))
}

async fn history_detail(s: Arc<SchedulerService>, req: ApiRequest) -> Result<Response> {
    require_system(req.ctx()?, "history-detail")?;
    let id = req.param("session");
    let d = s
        .history_detail(id)
        .ok_or_else(|| HttpError::not_found(format!("scheduler session {id} not found")))?;
    Ok(ok_json(json!({"history": to_json(&d)?})))
}

async fn clean_cache(s: Arc<SchedulerService>, mut req: ApiRequest) -> Result<Response> {
    require_system(req.ctx()?, "clean-cache")?;
    let p = params(&mut req).await?;
    match req.params.get("host_id") {
        Some(h) => s.invalidate_host(h),
        None => s.invalidate_all(),
    }
    if get_bool(&p, "sync_clean")?.unwrap_or(false) {
        s.refresh().await?;
    }
    Ok(ok_json(json!({"scheduler": {}})))
}

async fn completed(s: Arc<SchedulerService>, req: ApiRequest) -> Result<Response> {
    require_system(req.ctx()?, "completed")?;
    s.completed(req.param("session")).await;
    Ok(ok_json(json!({})))
}

/// The scheduler service (catalog type `scheduler`, no URL prefix).
pub fn service(
    sched: Arc<SchedulerService>,
    verifier: Arc<dyn TokenVerifier>,
    tenants: Arc<TenantCache>,
) -> Service {
    let svc = Service::new("scheduler", "compute", "", verifier, tenants);
    let svc = svc.route_with(Method::POST, "/scheduler", true, &sched, schedule);
    let svc = svc.route_with(Method::POST, "/scheduler/forecast", true, &sched, forecast);
    let svc = svc.route_with(
        Method::GET,
        "/scheduler/candidate-list",
        true,
        &sched,
        candidate_list,
    );
    let svc = svc.route_with(
        Method::POST,
        "/scheduler/candidate-list",
        true,
        &sched,
        candidate_list,
    );
    let svc = svc.route_with(
        Method::GET,
        "/scheduler/candidate-detail/{id}",
        true,
        &sched,
        candidate_detail,
    );
    let svc = svc.route_with(
        Method::POST,
        "/scheduler/candidate-detail/{id}",
        true,
        &sched,
        candidate_detail,
    );
    let svc = svc.route_with(
        Method::GET,
        "/scheduler/history-list",
        true,
        &sched,
        history_list,
    );
    let svc = svc.route_with(
        Method::POST,
        "/scheduler/history-list",
        true,
        &sched,
        history_list,
    );
    let svc = svc.route_with(
        Method::GET,
        "/scheduler/history-detail/{session}",
        true,
        &sched,
        history_detail,
    );
    let svc = svc.route_with(
        Method::POST,
        "/scheduler/history-detail/{session}",
        true,
        &sched,
        history_detail,
    );
    let svc = svc.route_with(
        Method::POST,
        "/scheduler/clean-cache",
        true,
        &sched,
        clean_cache,
    );
    let svc = svc.route_with(
        Method::POST,
        "/scheduler/clean-cache/{host_id}",
        true,
        &sched,
        clean_cache,
    );
    svc.route_with(
        Method::POST,
        "/scheduler/completed/{session}",
        true,
        &sched,
        completed,
    )
}
