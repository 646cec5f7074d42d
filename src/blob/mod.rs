//! Access to the object store holding uploaded blobs: presigning, verification and hashing.

mod client;
#[cfg(feature = "embedded-s3")]
pub mod embedded;
mod error;
mod hash;
mod multipart;
mod presign;
mod read;
mod write;

pub use client::{BlobStore, S3Settings};
pub use error::BlobError;
pub use hash::HashedObject;
pub use multipart::{InProgress, StoredPart};
pub use presign::PresignedPut;
pub use read::{ObjectHead, OpenObject, RangedRead};
