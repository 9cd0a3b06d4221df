//! `--leader-elect`: one active replica at a time through a `coordination.k8s.io/v1` Lease, for
//! publishing paths that allow only one publisher (a Tailscale node: one name, one state
//! Secret). The leader renews the Lease every third of its duration; a standby takes it over
//! once the record has not changed for a whole duration *as observed locally*, so clocks need
//! not agree. A leader that cannot renew within the duration steps down; on shutdown it
//! releases the Lease so a standby takes over at once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::serving::errors::chain;

/// This replica's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not decided yet (first attempt pending or failing).
    Unknown,
    Leader,
    Standby {
        holder: String,
    },
}

/// The Lease and who we are.
pub struct Election {
    pub leases: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    /// Exists exactly while this replica leads (`--leader-file`), for a sidecar to wait on.
    pub leader_file: Option<PathBuf>,
}

/// How long a sidecar watching the leader file may take to notice it is gone.
const SIDECAR_GRACE: Duration = Duration::from_secs(2);

/// What was last seen of the Lease, to judge expiry by the local clock.
struct Observed {
    record: (Option<String>, Option<MicroTime>),
    since: Instant,
}

impl Election {
    /// Campaigns until `shutdown`, publishing the role on `role`; releases the Lease at the end
    /// if held.
    pub async fn run(self, role: watch::Sender<Role>, shutdown: CancellationToken) {
        let mut observed: Option<Observed> = None;
        let mut last_renewal: Option<Instant> = None;
        loop {
            let outcome = self.attempt(&mut observed).await;
            let next = match outcome {
                Ok(next) => {
                    if next == Role::Leader {
                        last_renewal = Some(Instant::now());
                    }
                    next
                }
                Err(err) => {
                    tracing::warn!(lease = %self.name, error = %err, "cannot read or update the Lease");
                    match (role.borrow().clone(), last_renewal) {
                        // Keep leading while the Lease we renewed is still ours for sure.
                        (Role::Leader, Some(at)) if at.elapsed() < self.duration => Role::Leader,
                        (Role::Leader, _) => Role::Unknown,
                        (current, _) => current,
                    }
                }
            };
            if *role.borrow() != next {
                self.mark(next == Role::Leader);
                match &next {
                    Role::Leader => {
                        tracing::info!(lease = %self.name, identity = %self.identity, "became the leader")
                    }
                    Role::Standby { holder } => {
                        tracing::info!(lease = %self.name, holder, "standing by")
                    }
                    Role::Unknown => {
                        tracing::warn!(lease = %self.name, "stepped down: the Lease could not be renewed in time")
                    }
                }
                role.send_replace(next.clone());
            }
            let pause = if next == Role::Leader {
                self.duration / 3
            } else {
                self.duration / 4
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => break,
            }
        }
        if *role.borrow() == Role::Leader {
            role.send_replace(Role::Unknown);
            self.mark(false);
            if self.leader_file.is_some() {
                tokio::time::sleep(SIDECAR_GRACE).await;
            }
            match self.release().await {
                Ok(()) => tracing::info!(lease = %self.name, "released the Lease"),
                Err(err) => {
                    tracing::warn!(lease = %self.name, error = %err, "cannot release the Lease; a standby takes over when it expires")
                }
            }
        }
    }

    /// Creates or removes the leader file.
    fn mark(&self, leading: bool) {
        let Some(path) = &self.leader_file else {
            return;
        };
        let result = if leading {
            crate::serving::files::write_atomically(path, self.identity.as_bytes(), 0o644)
        } else {
            std::fs::remove_file(path).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
        };
        if let Err(err) = result {
            tracing::error!(path = %path.display(), error = %err, "cannot update the leader file");
        }
    }

    /// One round: create, renew or take over the Lease, or stand by.
    async fn attempt(&self, observed: &mut Option<Observed>) -> Result<Role, String> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let seconds = i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let Some(mut lease) = self
            .leases
            .get_opt(&self.name)
            .await
            .map_err(|e| chain(&e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(
                    serde_json::from_value(json!({
                        "holderIdentity": self.identity,
                        "leaseDurationSeconds": seconds,
                        "acquireTime": now,
                        "renewTime": now,
                        "leaseTransitions": 0,
                    }))
                    .expect("a valid LeaseSpec"),
                ),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Role::Leader),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Role::Unknown),
                Err(e) => Err(chain(&e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = (holder.clone(), spec.renew_time.clone());
        let unchanged_for = match observed {
            Some(o) if o.record == record => o.since.elapsed(),
            _ => {
                *observed = Some(Observed {
                    record,
                    since: Instant::now(),
                });
                Duration::ZERO
            }
        };
        let theirs =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).max(1) as u64);
        match holder {
            Some(h) if h == self.identity => {}
            Some(h) if unchanged_for < theirs => return Ok(Role::Standby { holder: h }),
            _ => {
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions =
                    Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            }
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(now);
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Role::Leader),
            // Someone else wrote it first: look again next round.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Role::Unknown),
            Err(e) => Err(chain(&e)),
        }
    }

    /// Gives the Lease up: no holder, a one-second duration.
    async fn release(&self) -> Result<(), String> {
        let mut lease = self.leases.get(&self.name).await.map_err(|e| chain(&e))?;
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        self.leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
            .map_err(|e| chain(&e))
    }
}

/// This replica's default identity: `$HOSTNAME` (the pod's name) and the process id.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "discovery".into());
    format!("{host}_{}", std::process::id())
}

/// The namespace of the Lease by default: the pod's own, else `default`.
pub fn default_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// The `/readyz` note a role deserves: none for the leader.
pub fn note(role: &Role, lease: &str) -> Option<String> {
    match role {
        Role::Leader => None,
        Role::Standby { holder } => Some(format!("standby: Lease {lease} is held by {holder}")),
        Role::Unknown => Some(format!("campaigning for Lease {lease}")),
    }
}
