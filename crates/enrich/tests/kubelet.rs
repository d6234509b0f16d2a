//! The kubelet client and the enricher against a kubelet stand-in serving real PodList JSON.

mod support {
    #[path = "kubelet_standin.rs"]
    pub mod kubelet_standin;
}

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use nasflow_enrich::{
    cgroup::CgroupHierarchy,
    kubelet::{parse_pod_list, KubeletClient, KubeletConfig},
    names::{EnrichConfig, Enricher},
};
use support::kubelet_standin::{start, Standin};

const PODS: &str = include_str!("fixtures/pods.json");
const APP_ID: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const APP_POD: &str = "6d2b5f8e-3c1a-4e7b-9f00-1a2b3c4d5e6f";

struct Env {
    dir: tempfile::TempDir,
    standin: Standin,
}

impl Env {
    async fn new(https: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("pods.json"), PODS).expect("pods");
        fs::write(dir.path().join("token"), "s3cret-token\n").expect("token");
        let token = https.then(|| "s3cret-token".to_owned());
        let standin = start("127.0.0.1:0", dir.path().join("pods.json"), token).await.expect("stand-in");
        if let Some(pem) = &standin.ca_pem {
            fs::write(dir.path().join("ca.pem"), pem).expect("ca");
        }
        Self { dir, standin }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn config(&self) -> KubeletConfig {
        let https = self.standin.ca_pem.is_some();
        KubeletConfig {
            url: self.standin.url(),
            token_path: Some(self.path("token")),
            ca_path: https.then(|| self.path("ca.pem")),
            insecure_skip_tls_verify: false,
            timeout: Duration::from_secs(2),
            max_body: nasflow_enrich::kubelet::DEFAULT_MAX_BODY,
        }
    }
}

#[tokio::test]
async fn https_with_token_and_ca() {
    let env = Env::new(true).await;
    let body = KubeletClient::new(env.config()).expect("client").fetch_pods().await.expect("fetch");
    let index = parse_pod_list(&body, &[]).expect("parse");
    assert_eq!(index.container(APP_ID).map(|c| c.pod.name.as_str()), Some("trainer-7d9f8b6c5-x2x9z"));
    assert_eq!(env.standin.seen.last_auth.lock().expect("lock").as_deref(), Some("Bearer s3cret-token"));
}

#[tokio::test]
async fn wrong_or_missing_token_is_refused_with_a_hint() {
    let env = Env::new(true).await;
    fs::write(env.path("bad"), "nope").expect("write");
    let mut cfg = env.config();
    cfg.token_path = Some(env.path("bad"));
    let err = KubeletClient::new(cfg.clone()).expect("client").fetch_pods().await.expect_err("must fail");
    assert!(err.to_string().contains("401") && err.to_string().contains("token"), "{err}");
    cfg.token_path = None;
    let err = KubeletClient::new(cfg).expect("client").fetch_pods().await.expect_err("must fail");
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(env.standin.seen.unauthorized.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unknown_ca_fails_unless_verification_is_skipped() {
    let env = Env::new(true).await;
    let mut cfg = env.config();
    cfg.ca_path = None;
    let err = KubeletClient::new(cfg.clone()).expect("client").fetch_pods().await.expect_err("must fail");
    assert!(format!("{err}").to_lowercase().contains("certificate"), "{err}");
    cfg.insecure_skip_tls_verify = true;
    KubeletClient::new(cfg).expect("client").fetch_pods().await.expect("skip verify");
}

#[tokio::test]
async fn a_body_over_the_bound_is_refused() {
    let env = Env::new(true).await;
    let mut cfg = env.config();
    cfg.max_body = PODS.len() - 1;
    let err = KubeletClient::new(cfg.clone()).expect("client").fetch_pods().await.expect_err("over the bound");
    assert!(err.to_string().contains(&format!("over {} bytes", PODS.len() - 1)), "{err}");
    cfg.max_body = PODS.len();
    let body = KubeletClient::new(cfg).expect("client").fetch_pods().await.expect("at the bound");
    assert_eq!(body.len(), PODS.len());
}

#[tokio::test]
async fn plain_http_read_only_port_gets_no_token() {
    let env = Env::new(false).await;
    let body = KubeletClient::new(env.config()).expect("client").fetch_pods().await.expect("fetch");
    assert!(parse_pod_list(&body, &[]).expect("parse").pods() > 0);
    assert_eq!(*env.standin.seen.last_auth.lock().expect("lock"), None, "no token over plain HTTP");
}

fn ino(p: &Path) -> u64 {
    fs::metadata(p).expect("stat").ino()
}

fn enrich_env(env: &Env) -> (EnrichConfig, PathBuf) {
    let cg = env.path("cgroup");
    fs::create_dir_all(cg.join(format!("kubepods/burstable/pod{APP_POD}/{APP_ID}"))).expect("mkdir");
    fs::create_dir_all(cg.join("system.slice/backup.service")).expect("mkdir");
    let proc = env.path("proc");
    fs::create_dir_all(proc.join("1")).expect("mkdir");
    fs::write(
        proc.join("1/mountinfo"),
        format!("120 30 0:61 / /var/lib/kubelet/pods/{APP_POD}/volumes/kubernetes.io~nfs/datasets rw - nfs 10.0.0.5:/exports/ds rw,vers=3\n"),
    )
    .expect("mountinfo");
    let cfg = EnrichConfig {
        hierarchy: CgroupHierarchy { v1: false, mount: cg.clone(), root_id: ino(&cg) },
        proc_root: proc,
        kubelet: Some(env.config()),
        kubelet_every: Duration::from_secs(3600),
        task_labels: vec!["team.example.com/task".into()],
    };
    (cfg, cg)
}

#[tokio::test]
async fn enricher_names_pods_nas_and_host_cgroups() {
    let env = Env::new(true).await;
    let (cfg, cg) = enrich_env(&env);
    let mut e = Enricher::spawn(cfg).expect("enricher");
    let app = ino(&cg.join(format!("kubepods/burstable/pod{APP_POD}/{APP_ID}")));
    let host = ino(&cg.join("system.slice/backup.service"));
    let dev = 61;
    let names = e.resolve(&[(app, dev), (host, dev)], Instant::now(), Duration::from_secs(2)).await;
    let attrs: std::collections::BTreeMap<_, _> = names.workloads[&app].attributes().into_iter().collect();
    assert_eq!(attrs["k8s.pod.name"], "trainer-7d9f8b6c5-x2x9z");
    assert_eq!(attrs["k8s.namespace.name"], "ml");
    assert_eq!(attrs["k8s.container.name"], "app");
    assert_eq!(attrs["k8s.deployment.name"], "trainer");
    assert_eq!(attrs["nasflow.task"], "llm-finetune");
    let nas = names.nas_of(dev, app).expect("nas");
    assert_eq!(
        (nas.server.as_str(), nas.export.as_str(), nas.volume.as_deref()),
        ("10.0.0.5", "/exports/ds", Some("datasets"))
    );
    let host_attrs = names.workloads[&host].attributes();
    assert_eq!(host_attrs, vec![("process.linux.cgroup", "/system.slice/backup.service".to_owned())]);
    assert_eq!(names.misses, 0);
}

#[tokio::test]
async fn a_new_pod_is_named_on_first_sight_and_a_dead_kubelet_does_not_stall() {
    let env = Env::new(true).await;
    let (cfg, cg) = enrich_env(&env);
    let mut e = Enricher::spawn(cfg).expect("enricher");
    let app = ino(&cg.join(format!("kubepods/burstable/pod{APP_POD}/{APP_ID}")));
    e.resolve(&[(app, 61)], Instant::now(), Duration::from_secs(2)).await;

    // A pod appears: its cgroup and its PodList entry, then its first I/O.
    let container_of_new_pod = "f".repeat(64);
    let uid_of_new_pod = "77777777-8888-9999-aaaa-bbbbbbbbbbbb";
    let mut list: serde_json::Value = serde_json::from_str(PODS).expect("json");
    let mut pod = list["items"][5].clone();
    pod["metadata"]["name"] = "fresh-pod".into();
    pod["metadata"]["uid"] = uid_of_new_pod.into();
    pod["status"]["containerStatuses"][0]["containerID"] = format!("containerd://{container_of_new_pod}").into();
    list["items"].as_array_mut().expect("items").push(pod);
    fs::write(env.path("pods.json"), serde_json::to_vec(&list).expect("json")).expect("write");
    let dir = cg.join(format!("kubepods/besteffort/pod{uid_of_new_pod}/{container_of_new_pod}"));
    fs::create_dir_all(&dir).expect("mkdir");
    let fresh = ino(&dir);
    let names = e.resolve(&[(app, 61), (fresh, 61)], Instant::now(), Duration::from_secs(3)).await;
    let w = &names.workloads[&fresh];
    assert_eq!(w.pod.as_ref().map(|p| p.name.as_str()), Some("fresh-pod"), "{w:?}");
    assert_eq!(names.misses, 0);

    // The kubelet goes away: resolution keeps the last good pods and returns within budget.
    env.standin.stop();
    let gone_id = "e".repeat(64);
    let dir = cg.join(format!("kubepods/besteffort/pod{uid_of_new_pod}/{gone_id}"));
    fs::create_dir_all(&dir).expect("mkdir");
    let unknown = ino(&dir);
    let t = Instant::now();
    let names = e.resolve(&[(app, 61), (unknown, 61)], Instant::now(), Duration::from_secs(2)).await;
    // Three sources at most, each bounded by the budget; a refused connection fails fast.
    assert!(t.elapsed() < Duration::from_secs(5), "resolution stalled for {:?}", t.elapsed());
    assert_eq!(names.workloads[&app].pod.as_ref().map(|p| p.name.as_str()), Some("trainer-7d9f8b6c5-x2x9z"));
    let attrs = names.workloads[&unknown].attributes();
    assert!(attrs.contains(&("container.id", gone_id.clone())), "labelled by container id: {attrs:?}");
    assert!(attrs.contains(&("k8s.pod.uid", uid_of_new_pod.to_owned())));
    assert!(names.misses >= 1);
}
