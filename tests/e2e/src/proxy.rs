//! A loopback TCP relay a test can take down, to make a server (the cloud, the apiserver)
//! unreachable for the controller while the test itself still reaches it directly.

use std::future::Future;
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    /// Relays to `127.0.0.1:upstream` while up. Going down cuts the connections already
    /// open (keep-alive pools, watches), as a dead server would; while down, each new
    /// connection is handed to `refused` with the moment it came.
    pub async fn start<F, Fut>(upstream: u16, refused: F) -> Self
    where
        F: Fn(TcpStream, Instant) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (up, state) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let at = Instant::now();
                if *state.borrow() {
                    tokio::spawn(relay(client, upstream, state.clone()));
                } else {
                    tokio::spawn(refused(client, at));
                }
            }
        });
        Self { port, up }
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

async fn relay(mut client: TcpStream, upstream: u16, mut state: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        // Down: both ends close mid-connection.
        _ = state.wait_for(|up| !*up) => {}
    }
}
