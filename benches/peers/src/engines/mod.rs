//! One file per engine, each implementing [`crate::engine::Engine`].

pub mod fjall;
pub mod lmdb;
pub mod redb;
pub mod sled;
pub mod vellum;
#[cfg(feature = "rocksdb")]
pub mod rocksdb;
