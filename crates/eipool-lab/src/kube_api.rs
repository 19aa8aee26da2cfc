//! The Kubernetes API's Node endpoints, as eipool's node mode calls them, on a free loopback
//! port. No API server can run on this project's machines (no kind, k3s or envtest), so, as the
//! chaos proxy does for EC2's semantics that moto lacks, this emulates the calls eipool makes,
//! each rule linked to the documentation it follows; eipool's side is the real binary with the
//! real kube-rs client, pointed here by a kubeconfig file ([`KubeApi::kubeconfig`]).
//!
//! - `GET /api/v1/nodes/{name}` and `PATCH /api/v1/nodes/{name}` with
//!   `Content-Type: application/json-patch+json` (RFC 6902), `?dryRun=All` honoured.
//! - Authentication: a bearer token the test granted, else 401.
//! - Authorization (RBAC): each token's user may use only the verbs granted on `nodes`, else
//!   403 with the API server's message.
//! - A Node that does not exist: 404.
//! - Optimistic concurrency: a patched object whose `metadata.resourceVersion` differs from the
//!   stored one is refused with 409 Conflict; a JSON patch operation that fails (a `test`, a
//!   `remove` of nothing) is 422.
//! - Validation eipool could trip: taints unique by (key, effect), each with a key and a valid
//!   effect: 422.
//!
//! Every request is logged ([`KubeApi::log`]) with the Node as stored after it; a stored patch
//! also records what the test's witness saw at that instant (e.g. EC2's view of the node's
//! interface), so a test can check the order of events across the two.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Called on every patch about to be stored, with the Node's name and the Node as it will be
/// stored; what it returns is logged with the patch.
pub type Witness =
    Arc<dyn Fn(String, Value) -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// One request as the emulator answered it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// When it was answered.
    pub at: Instant,
    /// `get`, `patch`, or `interfere` (a change made by "someone else", see
    /// [`KubeApi::interfere`]).
    pub verb: &'static str,
    /// The Node.
    pub node: String,
    /// The HTTP status answered.
    pub status: u16,
    /// `?dryRun=All`.
    pub dry_run: bool,
    /// The Node as stored after the request (or as it would be, for a dry run).
    pub after: Option<Value>,
    /// What the witness said, for a stored patch.
    pub witness: Option<String>,
}

impl Entry {
    /// The taint keys of [`Entry::after`].
    pub fn taint_keys(&self) -> Vec<String> {
        self.after.as_ref().map(taint_keys).unwrap_or_default()
    }

    /// Label `key` of [`Entry::after`].
    pub fn label(&self, key: &str) -> Option<String> {
        self.after.as_ref().and_then(|n| label(n, key))
    }
}

/// Someone else's change to a stored Node (its resourceVersion is set after it).
type Edit = Arc<dyn Fn(&mut Value) + Send + Sync>;

#[derive(Default)]
struct Inner {
    nodes: BTreeMap<String, Value>,
    /// The last resourceVersion given (etcd's revision: one counter for every object).
    revision: u64,
    /// token → (user name, verbs granted on nodes).
    tokens: HashMap<String, (String, Vec<String>)>,
    /// The bearer token of every request, in order.
    seen: Vec<String>,
    /// Node → how many more GETs are followed by someone else's change, and that change.
    interfere: HashMap<String, (usize, Edit)>,
    log: Vec<Entry>,
}

struct Shared {
    inner: Mutex<Inner>,
    witness: Mutex<Option<Witness>>,
    /// Serializes patches, as etcd's compare-and-swap does for one key.
    writes: tokio::sync::Mutex<()>,
}

/// A running emulator; stops when dropped.
pub struct KubeApi {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The Kubernetes `Status` object of a failure
/// (<https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/>).
fn status(code: StatusCode, reason: &str, message: String, name: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": name, "kind": "nodes"},
        "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

/// A refusal, answered as a `Status` by [`status`].
struct Refused {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

fn refused(code: StatusCode, reason: &'static str, message: String) -> Refused {
    Refused {
        code,
        reason,
        message,
    }
}

impl Refused {
    fn answer(self, name: &str) -> Response {
        status(self.code, self.reason, self.message, name)
    }
}

fn taint_keys(node: &Value) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["key"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn label(node: &Value, key: &str) -> Option<String> {
    node["metadata"]["labels"][key].as_str().map(str::to_string)
}

impl KubeApi {
    /// Serve on a free loopback port, with no Node and no user yet.
    pub async fn start() -> std::io::Result<KubeApi> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            witness: Mutex::new(None),
            writes: tokio::sync::Mutex::new(()),
        });
        let app = Router::new()
            .route("/api/v1/nodes/{name}", get(get_node).patch(patch_node))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
        });
        Ok(KubeApi {
            endpoint: format!("http://{addr}"),
            shared,
            stop,
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    /// Register a Node `name` with `labels` and `taints` (`(key, effect)`), as the kubelet
    /// registers it (with Karpenter's `startupTaints` or the node group's taints).
    pub fn add_node(&self, name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) {
        let mut inner = self.inner();
        inner.revision += 1;
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let taints: Vec<Value> = taints
            .iter()
            .map(|(k, e)| json!({"key": k, "effect": e}))
            .collect();
        let mut node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                // A Node registered again (deleted, then re-created) is a new object.
                "uid": format!("uid-{name}-{}", inner.revision),
                "resourceVersion": inner.revision.to_string(),
                "labels": labels,
            },
            "spec": {"providerID": format!("aws:///us-east-1a/{name}")},
        });
        if !taints.is_empty() {
            node["spec"]["taints"] = Value::Array(taints);
        }
        inner.nodes.insert(name.to_string(), node);
    }

    /// Change the Node `name` as someone else would (`kubectl label`, `kubectl taint`, an
    /// edit): `edit` gets the stored object; a new resourceVersion is set after it. False if
    /// there is no such Node.
    pub fn edit(&self, name: &str, edit: impl FnOnce(&mut Value)) -> bool {
        let mut inner = self.inner();
        inner.revision += 1;
        let revision = inner.revision.to_string();
        let Some(node) = inner.nodes.get_mut(name) else {
            return false;
        };
        edit(node);
        node["metadata"]["resourceVersion"] = json!(revision);
        true
    }

    /// Delete the Node `name` (as `kubectl delete node` or the cloud's node lifecycle does).
    pub fn delete_node(&self, name: &str) {
        self.inner().nodes.remove(name);
    }

    /// Let the bearer `token` authenticate as `user`, allowed `verbs` on nodes (RBAC).
    pub fn grant(&self, token: &str, user: &str, verbs: &[&str]) {
        self.inner().tokens.insert(
            token.into(),
            (user.into(), verbs.iter().map(|v| v.to_string()).collect()),
        );
    }

    /// Stop accepting the bearer `token` (an expired or revoked service account token).
    pub fn revoke(&self, token: &str) {
        self.inner().tokens.remove(token);
    }

    /// The bearer tokens requests were made with, in order (one entry per request).
    pub fn tokens_seen(&self) -> Vec<String> {
        self.inner().seen.clone()
    }

    /// The next `times` GETs of Node `name` are each followed, before anything else, by someone
    /// else's change to it (a kubelet's label, a new resourceVersion): a patch built on the
    /// answer then meets a 409.
    pub fn interfere(&self, name: &str, times: usize) {
        self.interfere_with(name, times, |n| {
            let rv = n["metadata"]["resourceVersion"].clone();
            n["metadata"]["labels"]["lab.eipool.io/heartbeat"] = rv;
        });
    }

    /// As [`KubeApi::interfere`], with `edit` as the other writer's change (e.g. removing a
    /// taint or a label, which a patch built on the answer then fails to remove: 422).
    pub fn interfere_with(
        &self,
        name: &str,
        times: usize,
        edit: impl Fn(&mut Value) + Send + Sync + 'static,
    ) {
        self.inner()
            .interfere
            .insert(name.into(), (times, Arc::new(edit)));
    }

    /// Log what `witness` says at every stored patch.
    pub fn set_witness(&self, witness: Witness) {
        *self.shared.witness.lock().unwrap() = Some(witness);
    }

    /// Every request so far, in the order answered.
    pub fn log(&self) -> Vec<Entry> {
        self.inner().log.clone()
    }

    /// The Node `name` as stored.
    pub fn node(&self, name: &str) -> Option<Value> {
        self.inner().nodes.get(name).cloned()
    }

    /// The taint keys of Node `name`.
    pub fn taints(&self, name: &str) -> Vec<String> {
        self.node(name).map(|n| taint_keys(&n)).unwrap_or_default()
    }

    /// Label `key` of Node `name`.
    pub fn label(&self, name: &str, key: &str) -> Option<String> {
        self.node(name).and_then(|n| label(&n, key))
    }

    /// Write a kubeconfig in `dir` that reaches this emulator as the user of `token`, and return
    /// its path (for `eipool node --kubeconfig`).
    pub fn kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        self.write_kubeconfig(
            dir.join(format!("kubeconfig-{token}")),
            json!({"token": token}),
        )
    }

    /// A kubeconfig whose user reads its token from `token_file` (as a pod's projected service
    /// account token, which the kubelet rotates), and its path.
    pub fn kubeconfig_with_token_file(&self, dir: &Path, token_file: &Path) -> PathBuf {
        self.write_kubeconfig(
            dir.join("kubeconfig-token-file"),
            json!({"tokenFile": token_file}),
        )
    }

    fn write_kubeconfig(&self, path: PathBuf, user: Value) -> PathBuf {
        // JSON is YAML: kube-rs reads it as a kubeconfig.
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lab", "cluster": {"server": self.endpoint}}],
            "users": [{"name": "eipool", "user": user}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "eipool"}}],
            "current-context": "lab",
        });
        std::fs::write(&path, config.to_string()).expect("write the kubeconfig");
        path
    }
}

/// The user of the request's bearer token, with the verbs granted; or the 401/403 answer.
/// Authentication: <https://kubernetes.io/docs/reference/access-authn-authz/authentication/>
/// (an unknown token is 401); authorization:
/// <https://kubernetes.io/docs/reference/access-authn-authz/rbac/> (a verb not granted on the
/// resource is 403, the message naming the user, verb and resource as the API server does).
fn authorize(inner: &mut Inner, h: &HeaderMap, verb: &str, name: &str) -> Result<(), Refused> {
    let token = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    inner.seen.push(token.unwrap_or_default().to_string());
    let Some((user, verbs)) = token.and_then(|t| inner.tokens.get(t)) else {
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
        ));
    };
    if !verbs.iter().any(|v| v == verb) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("nodes \"{name}\" is forbidden: User \"{user}\" cannot {verb} resource \"nodes\" in API group \"\" at the cluster scope"),
        ));
    }
    Ok(())
}

/// `GET /api/v1/nodes/{name}`
/// (<https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/node-v1/#get-read-the-specified-node>):
/// the Node, or 404 (<https://kubernetes.io/docs/reference/using-api/api-concepts/#http-status-codes>).
async fn get_node(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    h: HeaderMap,
) -> Response {
    let mut inner = s.inner.lock().unwrap();
    if let Err(r) = authorize(&mut inner, &h, "get", &name) {
        log(&mut inner, "get", &name, r.code, false, None, None);
        return r.answer(&name);
    }
    let Some(node) = inner.nodes.get(&name).cloned() else {
        log(
            &mut inner,
            "get",
            &name,
            StatusCode::NOT_FOUND,
            false,
            None,
            None,
        );
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("nodes \"{name}\" not found"),
            &name,
        );
    };
    log(
        &mut inner,
        "get",
        &name,
        StatusCode::OK,
        false,
        Some(node.clone()),
        None,
    );
    // Someone else writes the Node right after this read (the kubelet's heartbeat labels, a
    // controller): its resourceVersion moves on.
    if let Some((left, edit)) = inner.interfere.get_mut(&name).filter(|(n, _)| *n > 0) {
        *left -= 1;
        let edit = edit.clone();
        inner.revision += 1;
        let rv = inner.revision.to_string();
        let stored = inner.nodes.get_mut(&name).unwrap();
        stored["metadata"]["resourceVersion"] = json!(rv);
        edit(stored);
        let after = stored.clone();
        log(
            &mut inner,
            "interfere",
            &name,
            StatusCode::OK,
            false,
            Some(after),
            None,
        );
    }
    (StatusCode::OK, Json(node)).into_response()
}

fn log(
    inner: &mut Inner,
    verb: &'static str,
    node: &str,
    status: StatusCode,
    dry_run: bool,
    after: Option<Value>,
    witness: Option<String>,
) {
    inner.log.push(Entry {
        at: Instant::now(),
        verb,
        node: node.into(),
        status: status.as_u16(),
        dry_run,
        after,
        witness,
    });
}

/// `PATCH /api/v1/nodes/{name}` with a JSON patch
/// (<https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/node-v1/#patch-partially-update-the-specified-node>,
/// <https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/#use-a-json-merge-patch-to-update-a-deployment>
/// for the patch types).
async fn patch_node(
    State(s): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let _write = s.writes.lock().await;
    // Dry run: every stage runs (authorization, admission, validation), nothing is stored
    // (<https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run>).
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    // As the API server's GuaranteedUpdate: decide on the stored object, and decide again if it
    // changed meanwhile (then a patch guarded by the old resourceVersion meets its 409).
    loop {
        let decided = {
            let mut inner = s.inner.lock().unwrap();
            match decide(&mut inner, &name, &h, &body) {
                Ok(patched) => Ok((patched, inner.revision)),
                Err(r) => {
                    log(&mut inner, "patch", &name, r.code, dry_run, None, None);
                    Err(r.answer(&name))
                }
            }
        };
        let (patched, revision) = match decided {
            Ok(p) => p,
            Err(r) => return r,
        };
        if dry_run {
            let mut inner = s.inner.lock().unwrap();
            log(
                &mut inner,
                "patch",
                &name,
                StatusCode::OK,
                true,
                Some(patched.clone()),
                None,
            );
            return (StatusCode::OK, Json(patched)).into_response();
        }
        let witness = s.witness.lock().unwrap().clone();
        let seen = match witness {
            Some(w) => Some(w(name.clone(), patched.clone()).await),
            None => None,
        };
        let mut inner = s.inner.lock().unwrap();
        if inner.revision != revision {
            continue;
        }
        inner.revision += 1;
        let mut stored = patched;
        stored["metadata"]["resourceVersion"] = json!(inner.revision.to_string());
        inner.nodes.insert(name.clone(), stored.clone());
        log(
            &mut inner,
            "patch",
            &name,
            StatusCode::OK,
            false,
            Some(stored.clone()),
            seen,
        );
        return (StatusCode::OK, Json(stored)).into_response();
    }
}

/// The Node after the patch, or the answer refusing it.
fn decide(inner: &mut Inner, name: &str, h: &HeaderMap, body: &[u8]) -> Result<Value, Refused> {
    authorize(inner, h, "patch", name)?;
    let content_type = h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/json-patch+json" {
        return Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the emulator serves JSON patches only, not {content_type:?}"),
        ));
    }
    let Some(current) = inner.nodes.get(name).cloned() else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("nodes \"{name}\" not found"),
        ));
    };
    // A patch that does not decode is 400 (apiserver's patch handler: BadRequest).
    let patch: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| refused(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()))?;
    // An operation that fails to apply (a `test` that does not hold, a `remove` of a member
    // that is not there) is 422: the API server's patch handler answers
    // StatusUnprocessableEntity for any error of evanphx/json-patch's Apply.
    let mut patched = current.clone();
    json_patch::patch(&mut patched, &patch).map_err(|e| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UnprocessableEntity",
            e.to_string(),
        )
    })?;
    // Optimistic concurrency: an update whose object carries a resourceVersion other than the
    // stored one is refused with 409 Conflict
    // (<https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions>,
    // <https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#concurrency-control-and-consistency>);
    // one without is applied to the current object.
    let rv = |n: &Value| {
        n["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string)
    };
    if let Some(sent) = rv(&patched) {
        if Some(&sent) != rv(&current).as_ref() {
            return Err(refused(StatusCode::CONFLICT, "Conflict", format!("Operation cannot be fulfilled on nodes \"{name}\": the object has been modified; please apply your changes to the latest version and try again")));
        }
    }
    if patched["metadata"]["name"] != current["metadata"]["name"] {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name of the object does not match the name on the URL".into(),
        ));
    }
    validate_taints(&patched).map_err(|m| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("Node \"{name}\" is invalid: {m}"),
        )
    })?;
    Ok(patched)
}

/// Node validation as far as taints go (`ValidateNodeSpec`: each taint has a key and one of the
/// three effects, and taints are unique by key and effect:
/// <https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/>).
fn validate_taints(node: &Value) -> Result<(), String> {
    let Some(taints) = node["spec"].get("taints") else {
        return Ok(());
    };
    let Some(taints) = taints.as_array() else {
        return Err("spec.taints: must be a list".into());
    };
    let mut seen = std::collections::HashSet::new();
    for (i, t) in taints.iter().enumerate() {
        let key = t["key"].as_str().unwrap_or("");
        let effect = t["effect"].as_str().unwrap_or("");
        if key.is_empty() {
            return Err(format!("spec.taints[{i}].key: Required value"));
        }
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!(
                "spec.taints[{i}].effect: Unsupported value: {effect:?}"
            ));
        }
        if !seen.insert((key.to_string(), effect.to_string())) {
            return Err(format!(
                "spec.taints[{i}]: Duplicate value: taints must be unique by key and effect pair"
            ));
        }
    }
    Ok(())
}
