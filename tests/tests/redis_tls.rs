//! Redis over TLS with a password, against a real redis-server started here with TLS on loopback and
//! a CA made for the test; and the store's time limits, against Redis behind a delay. The password
//! must never appear in an error.

use adapters::RedisStore;
use handlers::ports::StateStore;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tests::delay_proxy::DelayProxy;
use tests::{service_env, unique};

/// A CA and a server certificate for 127.0.0.1, made with the openssl command.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed (Debian's openssl package)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=sparkpilot test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn rediss_with_a_password_works_and_the_password_never_shows() {
    let dir = std::env::temp_dir().join(unique("redis-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "s3cret-pw",
        ])
        .args([
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.pem",
            "--tls-auth-clients",
            "no",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed by infra/setup");
    let _server = Server(child);
    let ca = dir.join("ca.pem");
    let url = format!("rediss://:s3cret-pw@127.0.0.1:{port}/0");
    let started = Instant::now();
    let store = loop {
        match RedisStore::connect_with_ca(&url, Some(&ca)).await {
            Ok(s) => break s,
            Err(e) if started.elapsed() < Duration::from_secs(10) => {
                assert!(!e.to_string().contains("s3cret-pw"), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no TLS connection: {e}"),
        }
    };
    let key = unique("tls");
    store.set_many(&[(key.clone(), b"over tls".to_vec())], Some(Duration::from_secs(60))).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap().as_deref(), Some(&b"over tls"[..]));
    // A wrong password and an unknown CA fail, and say so without the password.
    let wrong = RedisStore::connect_with_ca(&format!("rediss://:not-it-pw@127.0.0.1:{port}/0"), Some(&ca))
        .await
        .err()
        .expect("a wrong password is refused");
    assert!(!wrong.to_string().contains("not-it-pw") && wrong.to_string().contains("***"), "{wrong}");
    let untrusted =
        RedisStore::connect(&url).await.err().expect("a certificate from an unknown CA is refused");
    assert!(!untrusted.to_string().contains("s3cret-pw"), "{untrusted}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_redis_that_stops_answering_fails_a_call_within_the_time_limit() {
    let target: std::net::SocketAddr =
        service_env("REDIS_URL").trim_start_matches("redis://").split('/').next().unwrap().parse().unwrap();
    // A slow network still works: 300 ms each way is inside the 2 s reply limit.
    let slow = DelayProxy::start(target, Duration::from_millis(300)).unwrap();
    let store = RedisStore::connect(&format!("redis://{}/0", slow.addr())).await.unwrap();
    assert_eq!(store.get(&unique("absent")).await.unwrap(), None);
    // A Redis that answers after 3 s: the read fails, retried three times, well inside a function's 60 s.
    let stuck = DelayProxy::start(target, Duration::from_millis(1_600)).unwrap();
    let started = Instant::now();
    let connected = RedisStore::connect(&format!("redis://{}/0", stuck.addr())).await;
    if let Ok(store) = connected {
        let err = store.get(&unique("absent")).await.unwrap_err();
        assert!(err.to_string().contains("redis"), "{err}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "a stuck Redis held the call {took:?}");
}
