//! The escalation to the city (吹哨) and back: the saga that files a
//! whistled case on the city platform through the outbox
//! (`crate::cases::outbox`), and the mirror of the city's later moves onto
//! the district record. Above `cases` (the domain: transitions, the store,
//! reads) and `state` (the gateway it works with); `server` runs its
//! worker beside the listeners, `api` starts a saga for a whistle.

pub mod mirror;
pub mod saga;
