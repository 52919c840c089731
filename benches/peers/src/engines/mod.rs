//! One file per engine, each implementing [`crate::engine::Engine`].

pub mod fjall;
pub mod lmdb;
pub mod redb;
#[cfg(feature = "rocksdb")]
pub mod rocksdb;
pub mod sled;
pub mod vellum;
