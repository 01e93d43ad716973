//! Shuffle blocks into Redis: one pipelined round trip for a batch of 64 × 64 KB blocks (what
//! shuffle-router does) against one SET per block, on a real redis-server (`REDIS_URL`), on loopback
//! and through [`tests::delay_proxy::DelayProxy`] at in-VPC round-trip times.
//!
//! Samples of the two ways alternate, so both see the same machine; the figures are medians and the
//! ratio is per block-by-block over pipelined. The round-trip time printed is measured (median of
//! PINGs through the proxy), not the one asked for.
//!
//! `eval "$(infra/services start)" && cargo bench --workspace --bench redis_pipeline`
//! (`REDIS_RTT_MS=0.2,0.5` picks the round-trip times; 0 is plain loopback.)

use adapters::RedisStore;
use handlers::ports::StateStore;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};
use tests::delay_proxy::DelayProxy;

// The function binaries' allocator (see the `serve` crate): shuffle-router's pipelines are these.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BLOCKS: usize = 64;
const BLOCK: usize = 64 * 1024;
const SAMPLES: usize = 30;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn redis_addr(url: &str) -> SocketAddr {
    let rest = url.trim_start_matches("redis://");
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("REDIS_URL {url} is not host:port"))
}

/// Median PING round trip to `addr`, in ms.
fn ping_rtt_ms(addr: SocketAddr) -> f64 {
    let mut s = TcpStream::connect(addr).expect("connect for PING");
    s.set_nodelay(true).unwrap();
    let mut buf = [0u8; 7];
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        s.write_all(b"PING\r\n").unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"+PONG\r\n");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(times)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: then check it runs once.
    let quick = !std::env::args().any(|a| a == "--bench");
    let url = tests::service_env("REDIS_URL");
    let target = redis_addr(&url);
    let rtts: Vec<f64> = std::env::var("REDIS_RTT_MS")
        .unwrap_or_else(|_| "0,0.2,0.5,1.0".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap_or_else(|_| panic!("REDIS_RTT_MS: {s:?} is not a number of ms")))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let blocks: Vec<(String, Vec<u8>)> =
        (0..BLOCKS).map(|i| (format!("bench:block:{i}"), vec![(i % 251) as u8; BLOCK])).collect();
    let ttl = Some(Duration::from_secs(60));
    println!("redis {BLOCKS} x {} KB blocks, medians of {SAMPLES} alternating samples", BLOCK / 1024);
    println!("{:>14} {:>14} {:>16} {:>8}", "RTT measured", "pipelined", "one SET each", "ratio");
    for rtt in rtts {
        let proxy = (rtt > 0.0).then(|| {
            DelayProxy::start(target, Duration::from_secs_f64(rtt / 2e3)).expect("start the delay proxy")
        });
        let addr = proxy.as_ref().map_or(target, |p| p.addr());
        let store =
            rt.block_on(RedisStore::connect(&format!("redis://{addr}/"))).expect("redis-server answers");
        let measured = ping_rtt_ms(addr);
        let (mut piped, mut each) = (Vec::new(), Vec::new());
        let samples = if quick { 1 } else { SAMPLES };
        // One warm-up of each, then alternate.
        for i in 0..=samples {
            let t = Instant::now();
            rt.block_on(store.set_many(&blocks, ttl)).unwrap();
            let p = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            rt.block_on(async {
                for block in &blocks {
                    store.set_many(std::slice::from_ref(block), ttl).await.unwrap();
                }
            });
            let e = t.elapsed().as_secs_f64() * 1e3;
            if i > 0 {
                piped.push(p);
                each.push(e);
            }
        }
        let (p, e) = (median(piped), median(each));
        let label =
            if proxy.is_some() { format!("{measured:.3} ms") } else { format!("{measured:.3} ms (lo)") };
        println!("{label:>14} {p:>11.2} ms {e:>13.2} ms {:>7.1}x", e / p);
    }
}
