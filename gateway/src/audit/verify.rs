//! `lianqiao audit verify`: walk a chain and name the first broken record.

use super::record::{AuditRecord, GENESIS, chain_hash};
use super::store::AuditStore;

/// The first problem found in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub chain: String,
    /// The sequence number of the first record that does not verify (or
    /// where a missing one should be).
    pub seq: i64,
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chain `{}` is broken at record {}: {}",
            self.chain, self.seq, self.reason
        )
    }
}

/// A verified point of a chain: its record `seq` and that record's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
}

/// Verify `chain`: numbering without gaps from 1, each record's `prev_hash`
/// the previous record's hash, each hash recomputed from the record, the
/// queryable columns equal to the hashed body, and the head row matching
/// the last record. Returns the number of records verified.
pub async fn verify(store: &AuditStore, chain: &str) -> Result<Result<u64, Broken>, String> {
    Ok(verify_after(store, chain, None)
        .await?
        .map(|(count, _)| count))
}

/// Verify the records of `chain` after `from` (all of them for `None`),
/// up to the head as it was when the walk began: records written during
/// the walk are the next walk's, so a chain in use verifies without false
/// alarms. Returns how many records were checked and the new checkpoint.
pub async fn verify_after(
    store: &AuditStore,
    chain: &str,
    from: Option<&Checkpoint>,
) -> Result<Result<(u64, Option<Checkpoint>), Broken>, String> {
    // The head and its records are committed in one transaction, so the
    // head read first bounds a consistent prefix of the chain.
    let head = store.recorded_head(chain).await?;
    let upto = head.as_ref().map_or(i64::MAX, |(seq, _)| *seq);
    let after = from.map_or(0, |c| c.seq);
    let mut expected_seq = after + 1;
    let mut prev = from.map_or_else(|| GENESIS.to_string(), |c| c.hash.clone());
    let mut broken: Option<Broken> = None;
    let mut count = 0u64;
    let brk = |seq: i64, reason: String| Broken {
        chain: chain.to_string(),
        seq,
        reason,
    };
    store
        .walk_range(chain, after, upto, |r| {
            let problem = if r.seq != expected_seq {
                Some(brk(
                    expected_seq,
                    format!("missing (the next record is {})", r.seq),
                ))
            } else if r.prev_hash != prev {
                Some(brk(
                    r.seq,
                    "its prev_hash is not the previous record's hash".into(),
                ))
            } else if chain_hash(chain, r.seq, &r.prev_hash, &r.body) != r.hash {
                Some(brk(
                    r.seq,
                    "its content does not match its hash (edited)".into(),
                ))
            } else {
                match serde_json::from_str::<AuditRecord>(&r.body) {
                    Ok(body)
                        if body.principal == r.principal
                            && body.request_id == r.request_id
                            && body.at == r.at
                            && i64::from(body.status) == r.status
                            && body.decision == r.decision
                            && super::record_division(&body) == r.division =>
                    {
                        None
                    }
                    Ok(_) => Some(brk(
                        r.seq,
                        "a column differs from the hashed record (edited)".into(),
                    )),
                    Err(e) => Some(brk(r.seq, format!("the record is not readable: {e}"))),
                }
            };
            match problem {
                Some(p) => {
                    broken = Some(p);
                    false
                }
                None => {
                    expected_seq += 1;
                    prev = r.hash;
                    count += 1;
                    true
                }
            }
        })
        .await?;
    if let Some(b) = broken {
        return Ok(Err(b));
    }
    let last = expected_seq - 1;
    // Records past the head were written outside the chain's writer (the
    // head and its records commit together). The highest seq is read
    // before the head again, so a batch committed in between is covered
    // by the head read after it.
    if head.is_some() {
        let highest = store.highest_seq(chain).await?;
        let head_now = store.recorded_head(chain).await?.map_or(0, |(seq, _)| seq);
        if highest > head_now {
            return Ok(Err(brk(
                head_now + 1,
                format!(
                    "records past the chain's head (up to {highest}, the head says {head_now}): written outside the chain"
                ),
            )));
        }
    }
    match head {
        Some((seq, hash)) if seq == last && (hash == prev) => {
            Ok(Ok((count, Some(Checkpoint { seq, hash }))))
        }
        Some((seq, _)) if seq > last => Ok(Err(brk(
            expected_seq,
            format!("missing: the chain's head says it has {seq} records (truncated)"),
        ))),
        None if count == 0 && from.is_none() => Ok(Ok((0, None))),
        _ => Ok(Err(brk(
            last,
            "the chain's head does not match its last record".into(),
        ))),
    }
}
