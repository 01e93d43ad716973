//! A TCP proxy that holds every chunk for a fixed time in each direction, keeping order: network
//! round-trip time on loopback, where the kernel has no netem (`tc qdisc ... netem` is the usual
//! tool). Used by the Redis pipelining benchmark to compare one round trip per batch against one per
//! block at an in-VPC round-trip time.
//!
//! Plain threads, not tokio: tokio's timers tick in whole milliseconds, and the delays wanted here
//! are a fraction of one. Per direction, one thread reads and stamps each chunk with the time it may
//! leave; another sleeps until then and writes it. Chunks therefore leave in arrival order, and a
//! large write streams through at loopback bandwidth, only shifted by the delay.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A running proxy: connect to [`DelayProxy::addr`] to reach the target through the delay.
pub struct DelayProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Listen on a free loopback port and forward every connection to `target`, delaying each
    /// direction by `one_way`.
    pub fn start(target: SocketAddr, one_way: Duration) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::Builder::new().name("delay-proxy-accept".into()).spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                match TcpStream::connect(target) {
                    Ok(server) => {
                        if let Err(e) = splice(client, server, one_way) {
                            eprintln!("delay proxy: {e}");
                        }
                    }
                    Err(e) => {
                        eprintln!("delay proxy: connect {target}: {e}");
                        let _ = client.shutdown(Shutdown::Both);
                    }
                }
            }
        })?;
        Ok(Self { addr, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn splice(client: TcpStream, server: TcpStream, delay: Duration) -> io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    pump(client.try_clone()?, server.try_clone()?, delay)?;
    pump(server, client, delay)
}

/// Copy `from` to `to`, every chunk `delay` after it was read.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) -> io::Result<()> {
    // Buffers go round between the two threads, so that a chunk is copied only by the kernel.
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>, usize)>();
    let (give_back, pool) = mpsc::channel::<Vec<u8>>();
    thread::Builder::new().name("delay-proxy-read".into()).spawn(move || loop {
        let mut buf = pool.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send((Instant::now() + delay, buf, n)).is_err() {
                    break;
                }
            }
        }
        // Dropping `tx` ends the writer once the chunks in flight are out.
    })?;
    thread::Builder::new().name("delay-proxy-write".into()).spawn(move || {
        for (due, buf, n) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.write_all(&buf[..n]).is_err() {
                return;
            }
            let _ = give_back.send(buf);
        }
        let _ = to.shutdown(Shutdown::Write);
    })?;
    Ok(())
}

/// Largest read; the kernel hands over at most what has arrived.
const CHUNK: usize = 1 << 18;

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback; returns its address.
    fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let _ = io::copy(&mut r, &mut s);
                });
            }
        });
        addr
    }

    #[test]
    fn bytes_pass_unchanged_in_order_and_no_sooner_than_the_round_trip() {
        let delay = Duration::from_millis(3);
        let proxy = DelayProxy::start(echo(), delay).unwrap();
        let mut s = TcpStream::connect(proxy.addr()).unwrap();
        s.set_nodelay(true).unwrap();
        // 1 MB: many chunks, which must come back in the order they went.
        let sent: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let start = Instant::now();
        let mut writer = s.try_clone().unwrap();
        let data = sent.clone();
        let w = thread::spawn(move || writer.write_all(&data).unwrap());
        let mut got = vec![0u8; sent.len()];
        s.read_exact(&mut got).unwrap();
        let elapsed = start.elapsed();
        w.join().unwrap();
        assert!(got == sent, "bytes changed or reordered through the proxy");
        // A lower bound only: each byte crossed the delay twice.
        assert!(elapsed >= 2 * delay, "the round trip took {elapsed:?}, less than twice the {delay:?} delay");
    }

    #[test]
    fn a_closed_target_closes_the_client() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        drop(listener);
        let proxy = DelayProxy::start(target, Duration::from_millis(1)).unwrap();
        let mut s = TcpStream::connect(proxy.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        // Nothing listens behind the proxy: the client sees end of stream, not a hang.
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    }
}
