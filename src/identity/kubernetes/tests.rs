use std::io::Write;
use std::path::Path;

use super::*;

fn settings(kubeconfig: Option<&Path>) -> KubeSettings {
    KubeSettings {
        kubeconfig: kubeconfig.map(Path::to_path_buf),
        node_name: "node-a".into(),
    }
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tfe-kube-{}-{name}", std::process::id()));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

async fn connect_error(settings: &KubeSettings) -> String {
    match connect(settings).await {
        Ok(_) => panic!("connected with {settings:?}"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn a_missing_kubeconfig_is_a_one_line_error_naming_it() {
    let path = Path::new("/nonexistent/kubeconfig.yaml");
    let error = connect_error(&settings(Some(path))).await;
    assert_eq!(
        error,
        "kubeconfig /nonexistent/kubeconfig.yaml: No such file or directory (os error 2)"
    );
}

#[tokio::test]
async fn a_malformed_kubeconfig_is_a_one_line_error_naming_it() {
    let path = temp_file("bad.yaml", "apiVersion: v1\nclusters: [\n  - {name: x\n");
    let error = connect_error(&settings(Some(&path))).await;
    std::fs::remove_file(&path).unwrap();
    let expected = format!(
        "kubeconfig {}: failed to parse kubeconfig YAML: error: line 3 column 3: ",
        path.display()
    );
    assert!(error.starts_with(&expected), "{error}");
    assert!(!error.contains('\n'), "{error}");
}

#[tokio::test]
async fn a_good_kubeconfig_gives_a_client_without_a_request() {
    // Port 1 on loopback: nothing listens, and connect must not try.
    let path = temp_file(
        "good.yaml",
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: 'http://127.0.0.1:1'}
users:
- name: test
  user: {token: abc}
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
",
    );
    let client = connect(&settings(Some(&path))).await;
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(client, Ok(Some(_))), "{:?}", client.err());
}

#[tokio::test]
async fn without_kubeconfig_only_a_pod_connects() {
    let result = connect(&settings(None)).await;
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        // In a pod: the in-cluster config is used (and needs its token).
        assert!(result.is_ok() || matches!(result, Err(KubeError::InCluster(_))));
    } else {
        assert!(matches!(result, Ok(None)));
    }
}
