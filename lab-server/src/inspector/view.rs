//! What the inspector shows, computed without I/O: the store with each
//! root's fate, and each connection's CertificateRequest as the names sent,
//! their sizes and running total, where the cut fell and which size marks the
//! list passed. The server sends one list to every connection (the policy is
//! planned once at start), so a connection's request is that list, as many
//! names as its event counted, unless a fault cut it for that connection
//! (`tls:cut-list-at`): then the event holds the names sent, a prefix of the
//! planned list whose last name may be truncated.

use serde::Serialize;

use certgen::Store;

use crate::events::ConnectionEvent;
use crate::policy::Report;

/// The sizes a vendor compares a list with: Schannel's 16 KB budget, the
/// 32 KB limit of Java and the Schannel client, TLS 1.2's 65,535 bytes.
pub const MARKS: [usize; 3] = [16_384, 32_768, 65_535];

/// One root of the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RootView {
    /// Its place in the store (enumeration order).
    pub index: usize,
    /// Its subject, as text (escape before showing: it came from a file).
    pub subject: String,
    /// The subject's DER length.
    pub der_len: usize,
    /// Its place in the list sent, or `None` when dropped.
    pub sent_at: Option<usize>,
}

/// One name of a CertificateRequest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameView {
    /// Store index.
    pub index: usize,
    /// Subject, as text.
    pub subject: String,
    /// DER length.
    pub der_len: usize,
    /// Bytes of names up to and including this one (2 + DER each).
    pub total: usize,
}

/// A connection's CertificateRequest, decoded against the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestView {
    /// The names, in the order sent.
    pub names: Vec<NameView>,
    /// Bytes of names.
    pub list_bytes: usize,
    /// Handshake message bytes, header included, as the wire showed them.
    pub message_bytes: usize,
    /// Records the message spanned.
    pub records: usize,
    /// Names the policy dropped.
    pub dropped: usize,
    /// The first root dropped: where the cut fell (store order).
    pub first_dropped: Option<RootView>,
    /// The marks of [`MARKS`] the list reaches or passes.
    pub marks_passed: Vec<usize>,
}

/// The store with each root's fate.
pub fn store_view(store: &Store, sent: &[usize]) -> Vec<RootView> {
    let mut at = vec![None; store.len()];
    for (k, &i) in sent.iter().enumerate() {
        if let Some(slot) = at.get_mut(i) {
            *slot = Some(k);
        }
    }
    store
        .roots()
        .iter()
        .zip(at)
        .enumerate()
        .map(|(index, (r, sent_at))| RootView {
            index,
            subject: r.subject_text(),
            der_len: r.subject_der().len(),
            sent_at,
        })
        .collect()
}

/// The request one connection saw: the first `ca_names` names of the list
/// sent, or the names a fault cut for it (`None` when the connection got no
/// CertificateRequest).
pub fn request_view(
    roots: &[RootView],
    sent: &[usize],
    report: &Report,
    ev: &ConnectionEvent,
) -> Option<RequestView> {
    let cr = ev.certificate_request.as_ref()?;
    let planned = sent.iter().filter_map(|&i| roots.get(i));
    let mut total = 0;
    let names: Vec<NameView> = match ev.cut_list.as_deref() {
        None => planned
            .take(cr.ca_names)
            .map(|r| (r.index, r.subject.clone(), r.der_len))
            .collect::<Vec<_>>(),
        // A cut list is a prefix of the planned one; only its last name
        // may be shorter than the root it came from.
        Some(cut) => planned
            .zip(cut)
            .map(|(r, name)| {
                let subject = if name.len() == r.der_len {
                    r.subject.clone()
                } else {
                    format!(
                        "(truncated by tls:cut-list-at to {} of {} bytes) {}",
                        name.len(),
                        r.der_len,
                        r.subject
                    )
                };
                (r.index, subject, name.len())
            })
            .collect(),
    }
    .into_iter()
    .map(|(index, subject, der_len)| {
        total += 2 + der_len;
        NameView {
            index,
            subject,
            der_len,
            total,
        }
    })
    .collect();
    let first_dropped = match ev.cut_list {
        None => roots.iter().find(|r| r.sent_at.is_none()).cloned(),
        // Cut by a fault: the first planned name not sent whole.
        Some(_) => sent
            .iter()
            .filter_map(|&i| roots.get(i))
            .zip(names.iter().map(Some).chain(std::iter::repeat(None)))
            .find(|(r, n)| n.is_none_or(|n| n.der_len != r.der_len))
            .map(|(r, _)| r.clone())
            .or_else(|| roots.iter().find(|r| r.sent_at.is_none()).cloned()),
    };
    let whole = names
        .iter()
        .zip(sent.iter().filter_map(|&i| roots.get(i)))
        .filter(|(n, r)| n.der_len == r.der_len)
        .count();
    Some(RequestView {
        marks_passed: MARKS.into_iter().filter(|&m| total >= m).collect(),
        names,
        list_bytes: total,
        message_bytes: cr.bytes,
        records: cr.records,
        dropped: match ev.cut_list {
            None => report.dropped,
            Some(_) => roots.len().saturating_sub(whole),
        },
        first_dropped,
    })
}

/// One line of the connections list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionSummary {
    /// Connection id.
    pub id: u64,
    /// Peer address.
    pub peer: String,
    /// The server persona that answered.
    pub persona: String,
    /// When it was accepted.
    pub started: String,
    /// TLS version.
    pub tls_version: Option<String>,
    /// `ok`, `failed`, or `none` (no TLS).
    pub outcome: String,
    /// The alert, if any.
    pub alert: Option<String>,
    /// Names in the CertificateRequest.
    pub ca_names: Option<usize>,
    /// The client certificate's subject.
    pub client: Option<String>,
    /// Messages stored.
    pub stored: usize,
}

/// The summary of an event.
pub fn summary(ev: &ConnectionEvent) -> ConnectionSummary {
    ConnectionSummary {
        id: ev.id,
        peer: ev.peer.clone(),
        persona: ev.persona.clone(),
        started: ev.started.clone(),
        tls_version: ev.tls_version.clone(),
        outcome: ev
            .handshake
            .as_ref()
            .map_or("none".to_owned(), |h| h.outcome.to_owned()),
        alert: ev.handshake.as_ref().and_then(|h| h.alert.clone()),
        ca_names: ev.certificate_request.as_ref().map(|c| c.ca_names),
        client: ev.client_certificate.as_ref().map(|c| c.subject.clone()),
        stored: ev.stored.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CertRequestInfo;
    use certgen::roots::RootsSpec;
    use certgen::{KeyAlg, Profile};

    fn store(n: u64) -> Store {
        let spec = RootsSpec {
            count: n,
            seed: Some(9),
            profile: Profile::Fixed(100),
            key: KeyAlg::Ed25519,
            dn_only: true,
        };
        certgen::roots::generate(&spec, &|_| {}).expect("roots").0
    }

    #[test]
    fn the_cut_and_the_running_total_follow_the_list_sent() {
        let s = store(200);
        let plan = crate::policy::plan_store(
            &s,
            &crate::policy::Settings::default(),
            crate::policy::TlsVersion::Tls12,
            certgen::wire::MAX_FRAGMENT,
            &[],
        )
        .expect("plan");
        let roots = store_view(&s, &plan.sent);
        assert_eq!(
            roots.iter().filter(|r| r.sent_at.is_some()).count(),
            plan.report.kept
        );
        let ev = ConnectionEvent {
            certificate_request: Some(CertRequestInfo {
                bytes: plan.report.message_bytes,
                records: plan.report.records,
                ca_names: plan.report.kept,
                source: "wire",
                overhead: plan.report.shape.body_len(0),
                real_overhead: None,
                difference: String::new(),
            }),
            ..ConnectionEvent::default()
        };
        let v = request_view(&roots, &plan.sent, &plan.report, &ev).expect("a request");
        // 102 bytes a name: 160 fit 16,384 bytes (16,320), the 161st does not.
        assert_eq!(v.names.len(), 160);
        assert_eq!(v.list_bytes, plan.report.list_bytes);
        assert_eq!(v.names.last().map(|n| n.total), Some(16_320));
        assert!(
            v.names
                .windows(2)
                .all(|w| w[1].total == w[0].total + 2 + w[1].der_len)
        );
        assert_eq!(v.first_dropped.as_ref().map(|r| r.index), Some(160));
        assert_eq!(v.dropped, 40);
        assert!(v.marks_passed.is_empty());
        let none = ConnectionEvent::default();
        assert!(request_view(&roots, &plan.sent, &plan.report, &none).is_none());
    }

    #[test]
    fn a_list_cut_by_a_fault_is_decoded_from_the_names_sent() {
        let s = store(200);
        let plan = crate::policy::plan_store(
            &s,
            &crate::policy::Settings::default(),
            crate::policy::TlsVersion::Tls12,
            certgen::wire::MAX_FRAGMENT,
            &[],
        )
        .expect("plan");
        let roots = store_view(&s, &plan.sent);
        let planned: Vec<Vec<u8>> = plan
            .sent
            .iter()
            .map(|&i| s.roots()[i].subject_der().to_vec())
            .collect();
        // 102 bytes a name: 9 whole names are 918 bytes; the 10th keeps 80
        // of its 100 DER bytes.
        let cut = crate::faults::cut_ca_list(&planned, 1_000);
        let ev = ConnectionEvent {
            certificate_request: Some(CertRequestInfo {
                bytes: 0,
                records: 1,
                ca_names: cut.len(),
                source: "wire",
                overhead: 0,
                real_overhead: None,
                difference: String::new(),
            }),
            cut_list: Some(std::sync::Arc::new(cut)),
            ..ConnectionEvent::default()
        };
        let v = request_view(&roots, &plan.sent, &plan.report, &ev).expect("a request");
        assert_eq!(v.names.len(), 10);
        assert_eq!(v.list_bytes, 1_000);
        let last = v.names.last().expect("a last name");
        assert_eq!((last.index, last.der_len), (9, 80));
        assert!(
            last.subject
                .starts_with("(truncated by tls:cut-list-at to 80 of 100 bytes)")
        );
        assert_eq!(v.names[8].subject, roots[8].subject);
        assert_eq!(v.first_dropped.as_ref().map(|r| r.index), Some(9));
        assert_eq!(v.dropped, 191);
    }
}
