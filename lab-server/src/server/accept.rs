//! The listener: connection limits (in all and per client address), the
//! refusals past them, and shutdown.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::Shared;
use super::session;

/// How long a refused client gets to take its 421 before the socket closes.
const REFUSAL_WRITE: Duration = Duration::from_secs(2);

/// Slots in all and per client address. A client holds one of each for as
/// long as its session lasts; a slow sender from one address can exhaust its
/// address's share, never the server.
#[derive(Clone)]
pub(super) struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_address: usize,
    by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A held slot; dropping it frees both counts.
pub(super) struct Slot {
    _total: OwnedSemaphorePermit,
    address: IpAddr,
    by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.by_address.lock()
            && let Some(n) = map.get_mut(&self.address)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// Why a connection was refused, with the reply it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Every slot is taken.
    Full,
    /// This address holds its share.
    Address,
}

impl Refusal {
    fn reply(self) -> &'static str {
        match self {
            Refusal::Full => "421 4.3.2 Too many connections, try again later\r\n",
            Refusal::Address => "421 4.7.0 Too many connections from your address\r\n",
        }
    }
}

impl ConnectionLimits {
    pub(super) fn new(total: usize, per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_address: per_address.max(1),
            by_address: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Takes a slot for a client at `address`, or says why not.
    pub(super) fn acquire(&self, address: IpAddr) -> Result<Slot, Refusal> {
        let mut map = self.by_address.lock().map_err(|_| Refusal::Full)?;
        let held = map.get(&address).copied().unwrap_or(0);
        if held >= self.per_address {
            return Err(Refusal::Address);
        }
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        map.insert(address, held + 1);
        Ok(Slot {
            _total: permit,
            address,
            by_address: self.by_address.clone(),
        })
    }
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors and the like: back off, keep serving.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match limits.acquire(peer.ip()) {
                    Ok(slot) => {
                        let shared = shared.clone();
                        let shutdown = shutdown.clone();
                        tasks.spawn(async move {
                            session::connection(tcp, peer, shared, shutdown).await;
                            drop(slot);
                        });
                    }
                    Err(refusal) => {
                        tasks.spawn(refuse(tcp, refusal));
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

async fn refuse(mut tcp: TcpStream, refusal: Refusal) {
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        let _ = tcp.write_all(refusal.reply().as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_its_share_and_the_rest_stay_free() {
        let limits = ConnectionLimits::new(5, 2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let a1 = limits.acquire(a).unwrap();
        let _a2 = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).err(), Some(Refusal::Address));
        let _b1 = limits.acquire(b).unwrap();
        drop(a1);
        let _a3 = limits.acquire(a).unwrap();
        let _b2 = limits.acquire(b).unwrap();
        assert_eq!(limits.acquire(b).err(), Some(Refusal::Address));
        let c: IpAddr = [127, 0, 0, 3].into();
        let _c1 = limits.acquire(c).unwrap();
        assert_eq!(limits.acquire(c).err(), Some(Refusal::Full));
    }
}
