//! Keystone v3 token requests and responses as Cloudpods speaks them
//! (`pkg/mcclient/input.go`, `token3.go`).

use serde::{Deserialize, Serialize};

/// `POST /v3/auth/tokens` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthRequest {
    pub auth: AuthBody,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthBody {
    pub identity: AuthIdentity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<AuthScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<AuthContext>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthIdentity {
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenAuth>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PasswordAuth {
    pub user: UserAuth,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<NameOrId>,
}

/// `{"id": ...}` or `{"name": ...}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameOrId {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl NameOrId {
    pub fn id(id: impl Into<String>) -> NameOrId {
        NameOrId {
            id: Some(id.into()),
            name: None,
        }
    }
    pub fn name(name: impl Into<String>) -> NameOrId {
        NameOrId {
            id: None,
            name: Some(name.into()),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.id.as_deref().unwrap_or("").is_empty() && self.name.as_deref().unwrap_or("").is_empty()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenAuth {
    pub id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<NameOrId>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProjectScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<NameOrId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthContext {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
}

/// Names of the policies bound to a token, per scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyNames {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub project: Vec<String>,
}

/// `{"id": .., "name": ..}` references inside a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdName {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRef {
    pub id: String,
    pub name: String,
    pub domain: IdName,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: String,
    pub name: String,
    pub domain: IdName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_expires_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEndpoint {
    pub id: String,
    pub interface: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub region_id: String,
    pub url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogService {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub service_type: String,
    pub endpoints: Vec<CatalogEndpoint>,
}

/// The `token` object of token responses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenBody {
    #[serde(default)]
    pub audit_ids: Vec<String>,
    #[serde(default)]
    pub catalog: Vec<CatalogService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<AuthContext>,
    pub expires_at: String,
    #[serde(default)]
    pub issued_at: String,
    #[serde(default)]
    pub is_domain: bool,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub policies: PolicyNames,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<IdName>,
    #[serde(default)]
    pub roles: Vec<IdName>,
    pub user: UserRef,
    /// Projects the user can scope to (unscoped tokens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<ProjectRef>,
}

/// `POST /v3/auth/tokens` answer: Cloudpods repeats the token id in the body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenResponse {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub token: TokenBody,
}

impl TokenBody {
    /// The endpoint URL for a service type, interface and (optional) region.
    pub fn endpoint(
        &self,
        service_type: &str,
        interface: &str,
        region: Option<&str>,
    ) -> Option<&str> {
        let svc = self
            .catalog
            .iter()
            .find(|s| s.service_type == service_type)?;
        let pick = |iface: &str| {
            svc.endpoints.iter().find(|e| {
                e.interface == iface
                    && region.is_none_or(|r| r.is_empty() || e.region_id == r || e.region == r)
            })
        };
        pick(interface)
            .or_else(|| pick("public"))
            .or_else(|| pick("internal"))
            .map(|e| e.url.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_request_shape() {
        let v: AuthRequest = serde_json::from_value(serde_json::json!({
            "auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "sysadmin", "password": "pw", "domain": {"id": "default"}}}},
                     "scope": {"project": {"name": "system", "domain": {"name": "Default"}}},
                     "context": {"source": "cli"}}
        }))
        .expect("parse");
        assert_eq!(v.auth.identity.methods, ["password"]);
        let scope = v.auth.scope.expect("scope").project.expect("project");
        assert_eq!(scope.domain, Some(NameOrId::name("Default")));
    }

    #[test]
    fn endpoint_selection() {
        let t = TokenBody {
            catalog: vec![CatalogService {
                id: "s".into(),
                name: "region2".into(),
                service_type: "compute_v2".into(),
                endpoints: vec![
                    CatalogEndpoint {
                        id: "1".into(),
                        interface: "internal".into(),
                        name: String::new(),
                        region: "region0".into(),
                        region_id: "region0".into(),
                        url: "http://i".into(),
                    },
                    CatalogEndpoint {
                        id: "2".into(),
                        interface: "public".into(),
                        name: String::new(),
                        region: "region0".into(),
                        region_id: "region0".into(),
                        url: "http://p".into(),
                    },
                ],
            }],
            ..Default::default()
        };
        assert_eq!(
            t.endpoint("compute_v2", "internal", Some("region0")),
            Some("http://i")
        );
        assert_eq!(t.endpoint("compute_v2", "admin", None), Some("http://p"));
        assert_eq!(t.endpoint("image", "public", None), None);
    }
}
