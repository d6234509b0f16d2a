//! Pods from the kubelet's local `GET /pods` (a v1 PodList): container ids to pods,
//! containers, owners and tasks, without any apiserver call.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::{error_chain, EnrichError};

/// Where a pod's service account token and cluster CA are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A pod as nasflow labels it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodMeta {
    /// `k8s.namespace.name`.
    pub namespace: String,
    /// `k8s.pod.name`.
    pub name: String,
    /// `k8s.pod.uid`.
    pub uid: String,
    /// Owner attributes (`k8s.deployment.name`, `k8s.replicaset.name`, ...), in a fixed order.
    pub owners: Vec<(&'static str, String)>,
    /// `nasflow.task`: the task label, else the top-level owner, else the pod name.
    pub task: String,
}

/// A container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMeta {
    /// The pod.
    pub pod: Arc<PodMeta>,
    /// `k8s.container.name`.
    pub name: String,
}

/// Pods and containers by id, from one PodList.
#[derive(Debug, Clone, Default)]
pub struct PodIndex {
    by_container: HashMap<String, ContainerMeta>,
    by_uid: HashMap<String, Arc<PodMeta>>,
    /// Items of the list that were not pods nasflow could read: skipped, not fatal.
    pub malformed: usize,
}

impl PodIndex {
    /// The container with this id (64 hex digits, no runtime prefix).
    #[must_use]
    pub fn container(&self, id: &str) -> Option<&ContainerMeta> {
        self.by_container.get(id)
    }

    /// The pod with this UID.
    #[must_use]
    pub fn pod(&self, uid: &str) -> Option<&Arc<PodMeta>> {
        self.by_uid.get(uid)
    }

    /// Number of pods.
    #[must_use]
    pub fn pods(&self) -> usize {
        self.by_uid.len()
    }
}

/// Strips the runtime scheme of a status container id (`containerd://<id>`).
fn bare_id(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, id)| id)
}

/// Owner attributes and the top-level owner's name, from the controller reference.
fn owners(pod: &Pod) -> (Vec<(&'static str, String)>, Option<String>) {
    let meta = &pod.metadata;
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    let Some(owner) = refs.iter().find(|r| r.controller == Some(true)).or_else(|| refs.first()) else {
        return (Vec::new(), None);
    };
    let name = owner.name.clone();
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let hash = meta.labels.as_ref().and_then(|l| l.get("pod-template-hash"));
            let deployment = hash.and_then(|h| name.strip_suffix(h.as_str())?.strip_suffix('-')).map(str::to_owned);
            match deployment {
                Some(d) => (vec![("k8s.deployment.name", d.clone()), ("k8s.replicaset.name", name)], Some(d)),
                None => (vec![("k8s.replicaset.name", name.clone())], Some(name)),
            }
        }
        "StatefulSet" => (vec![("k8s.statefulset.name", name.clone())], Some(name)),
        "DaemonSet" => (vec![("k8s.daemonset.name", name.clone())], Some(name)),
        "Job" => match cronjob_of(&name) {
            Some(cj) => {
                (vec![("k8s.cronjob.name", cj.to_owned()), ("k8s.job.name", name.clone())], Some(cj.to_owned()))
            }
            None => (vec![("k8s.job.name", name.clone())], Some(name)),
        },
        _ => (Vec::new(), Some(name)),
    }
}

/// CronJobs name their Jobs `<cronjob>-<scheduled minute since the epoch>`: 8 or more digits.
fn cronjob_of(job: &str) -> Option<&str> {
    let (prefix, suffix) = job.rsplit_once('-')?;
    (suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit()) && !prefix.is_empty()).then_some(prefix)
}

/// Builds the index from a PodList body. `task_labels`: the first of these labels a pod has
/// is its task.
///
/// Each pod is read on its own: one pod the agent cannot read (a field of an unexpected type,
/// from a newer or a patched kubelet) is skipped and counted in [`PodIndex::malformed`], and
/// the others are named. Only a body that is no PodList at all is an error.
pub fn parse_pod_list(body: &[u8], task_labels: &[String]) -> Result<PodIndex, EnrichError> {
    /// The list with its items left unparsed.
    #[derive(serde::Deserialize)]
    struct RawList<'a> {
        #[serde(borrow)]
        items: Vec<&'a serde_json::value::RawValue>,
    }
    let list: RawList<'_> =
        serde_json::from_slice(body).map_err(|e| EnrichError::BadPodList { detail: e.to_string() })?;
    let mut index = PodIndex::default();
    for raw in list.items {
        let Ok(pod) = serde_json::from_str::<Pod>(raw.get()) else {
            index.malformed += 1;
            continue;
        };
        let m = &pod.metadata;
        let (Some(uid), Some(name)) = (m.uid.clone(), m.name.clone()) else {
            continue;
        };
        let (owner_attrs, top) = owners(&pod);
        let label_task = m
            .labels
            .as_ref()
            .and_then(|labels| task_labels.iter().find_map(|k| labels.get(k).filter(|v| !v.is_empty())))
            .cloned();
        let meta = Arc::new(PodMeta {
            namespace: m.namespace.clone().unwrap_or_default(),
            task: label_task.or(top).unwrap_or_else(|| name.clone()),
            name,
            uid: uid.clone(),
            owners: owner_attrs,
        });
        if let Some(status) = &pod.status {
            let all =
                [&status.init_container_statuses, &status.container_statuses, &status.ephemeral_container_statuses];
            for statuses in all.into_iter().flatten() {
                for cs in statuses {
                    add_container(&mut index, &meta, cs);
                }
            }
        }
        index.by_uid.insert(uid, meta);
    }
    Ok(index)
}

/// Both ids of a restarted container: the running one and the last terminated one.
fn add_container(index: &mut PodIndex, pod: &Arc<PodMeta>, cs: &ContainerStatus) {
    let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()).and_then(|t| t.container_id.as_deref());
    for id in [cs.container_id.as_deref(), last].into_iter().flatten() {
        let id = bare_id(id);
        if !id.is_empty() {
            index.by_container.insert(id.to_owned(), ContainerMeta { pod: Arc::clone(pod), name: cs.name.clone() });
        }
    }
}

/// How to reach the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletConfig {
    /// Base URL: `https://<node>:10250` by default, `http://127.0.0.1:10255` for the read-only port.
    pub url: String,
    /// Bearer token file, re-read on every request (tokens rotate); only sent over HTTPS.
    pub token_path: Option<PathBuf>,
    /// CA bundle for the kubelet's serving certificate.
    pub ca_path: Option<PathBuf>,
    /// Accept any serving certificate (many kubelets serve self-signed ones).
    pub insecure_skip_tls_verify: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Largest `/pods` body read; a larger one is an error (the last good table stays).
    pub max_body: usize,
}

/// Default [`KubeletConfig::max_body`]: 64 MiB, some thousands of pods with room to spare.
pub const DEFAULT_MAX_BODY: usize = 64 << 20;

impl KubeletConfig {
    /// HTTPS on 10250 of `host` with the pod's service account token and CA when present.
    #[must_use]
    pub fn in_cluster(host: &str) -> Self {
        let sa = PathBuf::from(SERVICE_ACCOUNT_DIR);
        Self {
            url: format!("https://{host}:10250"),
            token_path: Some(sa.join("token")).filter(|p| p.is_file()),
            ca_path: Some(sa.join("ca.crt")).filter(|p| p.is_file()),
            insecure_skip_tls_verify: false,
            timeout: Duration::from_secs(5),
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Fetches `/pods` from the kubelet with `kube`'s client and its TLS (the CA bundle, re-read
/// as it rotates, or no verification when asked). The bearer token is read from its file on
/// every request, so a rotated token is used at once, and goes over HTTPS only.
#[derive(Clone)]
pub struct KubeletClient {
    client: kube::Client,
    cfg: KubeletConfig,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl KubeletClient {
    /// Builds the client; nothing is sent yet. The CA bundle must be readable now.
    pub fn new(cfg: KubeletConfig) -> Result<Self, EnrichError> {
        let err = |detail: String| EnrichError::Kubelet { url: cfg.url.clone(), detail };
        let uri: http::Uri = cfg.url.parse().map_err(|e| err(format!("not a URL: {e}")))?;
        let mut config = kube::Config::new(uri);
        config.connect_timeout = Some(cfg.timeout);
        config.read_timeout = Some(cfg.timeout);
        config.default_retry = false;
        config.accept_invalid_certs = cfg.insecure_skip_tls_verify;
        if let Some(ca) = &cfg.ca_path {
            let pem = std::fs::read(ca).map_err(|source| EnrichError::Io { path: ca.clone(), source })?;
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(err(format!("CA bundle {}: no PEM certificate in it", ca.display())));
            }
            config.root_cert_file = Some(ca.clone());
        }
        let client = kube::Client::try_from(config).map_err(|e| err(error_chain(&e)))?;
        Ok(Self { client, cfg })
    }

    /// `GET /pods`, returning the body (at most `max_body` bytes).
    pub async fn fetch_pods(&self) -> Result<Vec<u8>, EnrichError> {
        use http_body_util::BodyExt;

        let url = format!("{}/pods", self.cfg.url.trim_end_matches('/'));
        let err = |detail: String| EnrichError::Kubelet { url: url.clone(), detail };
        let mut req = http::Request::get("/pods");
        // The token is read on every request (it rotates), trimmed (a hand-written file often
        // ends in a newline), and sent over HTTPS only.
        if self.cfg.url.starts_with("https://") {
            if let Some(path) = &self.cfg.token_path {
                let token =
                    std::fs::read_to_string(path).map_err(|source| EnrichError::Io { path: path.clone(), source })?;
                req = req.header(http::header::AUTHORIZATION, format!("Bearer {}", token.trim()));
            }
        }
        let req = req.body(kube::client::Body::empty()).map_err(|e| err(e.to_string()))?;
        let resp = self.client.send(req).await.map_err(|e| err(error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 => " (the token was refused)",
                403 => " (not authorised: grant `get` on nodes/pods, or nodes/proxy before Kubernetes 1.33)",
                _ => "",
            };
            return Err(err(format!("HTTP {status}{hint}")));
        }
        let max = self.cfg.max_body;
        let too_big = || err(format!("the body is over {max} bytes (raise --kubelet-max-body-bytes)"));
        let length =
            resp.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if length.is_some_and(|n| n > max) {
            return Err(too_big());
        }
        let mut body = resp.into_body();
        let mut out = Vec::with_capacity(length.unwrap_or(0));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| err(error_chain(&e)))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > max {
                    return Err(too_big());
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: &str = include_str!("../tests/fixtures/pods.json");

    fn index(labels: &[&str]) -> PodIndex {
        parse_pod_list(PODS.as_bytes(), &labels.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).expect("parse")
    }

    fn owner<'a>(p: &'a PodMeta, key: &str) -> Option<&'a str> {
        p.owners.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn deployment_pod_with_init_and_restarted_containers() {
        let ix = index(&[]);
        let c = ix.container(&"a".repeat(64)).expect("app container");
        assert_eq!(
            (c.name.as_str(), c.pod.namespace.as_str(), c.pod.name.as_str()),
            ("app", "ml", "trainer-7d9f8b6c5-x2x9z")
        );
        assert_eq!(owner(&c.pod, "k8s.deployment.name"), Some("trainer"));
        assert_eq!(owner(&c.pod, "k8s.replicaset.name"), Some("trainer-7d9f8b6c5"));
        assert_eq!(c.pod.task, "trainer");
        // The id before the restart still names the same container.
        assert_eq!(ix.container(&"b".repeat(64)).map(|c| c.name.as_str()), Some("app"));
        assert_eq!(ix.container(&"c".repeat(64)).map(|c| c.name.as_str()), Some("fetch-data"));
        assert_eq!(ix.container(&"d".repeat(64)).map(|c| c.name.as_str()), Some("debugger"));
    }

    #[test]
    fn statefulset_daemonset_cronjob_job_and_ownerless() {
        let ix = index(&[]);
        let by_name = |n: &str| ix.by_uid.values().find(|p| p.name == n).expect(n).clone();
        let db = by_name("db-0");
        assert_eq!((owner(&db, "k8s.statefulset.name"), db.task.as_str()), (Some("db"), "db"));
        let ds = by_name("node-agent-abcde");
        assert_eq!(owner(&ds, "k8s.daemonset.name"), Some("node-agent"));
        let cj = by_name("nightly-backup-29123456-qwert");
        assert_eq!(owner(&cj, "k8s.cronjob.name"), Some("nightly-backup"));
        assert_eq!(owner(&cj, "k8s.job.name"), Some("nightly-backup-29123456"));
        assert_eq!(cj.task, "nightly-backup");
        let job = by_name("migrate-2-zzzzz");
        assert_eq!((owner(&job, "k8s.job.name"), owner(&job, "k8s.cronjob.name")), (Some("migrate-2"), None));
        let bare = by_name("debug-shell");
        assert!(bare.owners.is_empty());
        assert_eq!(bare.task, "debug-shell");
        // A ReplicaSet without the pod-template-hash label is not taken for a Deployment's.
        let rs = by_name("manual-rs-abcde");
        assert_eq!((owner(&rs, "k8s.replicaset.name"), owner(&rs, "k8s.deployment.name")), (Some("manual-rs"), None));
    }

    #[test]
    fn task_labels_first_present_wins() {
        let ix = index(&["team.example.com/task", "app"]);
        let c = ix.container(&"a".repeat(64)).expect("app");
        assert_eq!(c.pod.task, "llm-finetune");
        let db = ix.by_uid.values().find(|p| p.name == "db-0").expect("db");
        assert_eq!(db.task, "postgres", "falls through to the second label");
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in ["", "{", "[]", r#"{"kind":"PodList","apiVersion":"v1","items":7}"#] {
            assert!(parse_pod_list(bad.as_bytes(), &[]).is_err(), "{bad}");
        }
        let empty =
            parse_pod_list(br#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}"#, &[]).expect("empty");
        assert_eq!(empty.pods(), 0);
    }

    #[test]
    fn a_malformed_pod_is_skipped_and_counted_and_the_others_named() {
        // The fixture's pods, with one more whose metadata is of the wrong type.
        let mut list: serde_json::Value = serde_json::from_str(PODS).expect("fixture");
        let items = list["items"].as_array_mut().expect("items");
        let pods = items.len();
        items.insert(1, serde_json::json!({"metadata": 7, "status": {}}));
        items.push(serde_json::json!({"metadata": {"name": "x", "uid": "u", "labels": {"a": 1}}}));
        let ix = parse_pod_list(&serde_json::to_vec(&list).expect("json"), &[]).expect("one bad pod is not fatal");
        assert_eq!((ix.pods(), ix.malformed), (pods, 2));
        assert!(ix.container(&"a".repeat(64)).is_some(), "the other pods are named");
    }

    #[test]
    fn cronjob_names() {
        assert_eq!(cronjob_of("nightly-backup-29123456"), Some("nightly-backup"));
        assert_eq!(cronjob_of("migrate-2"), None);
        assert_eq!(cronjob_of("-12345678"), None);
        assert_eq!(cronjob_of("x-1234567a"), None);
    }
}
