//! What a verified confirmation records: a pure decision, the same for a confirmation
//! finished alone and for one finished in a group.

use super::{ObjectId, UploadId};

/// The upload a duplicate repeats, and that upload's object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub upload_id: UploadId,
    pub object_id: Option<ObjectId>,
}

/// What completing one upload writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The upload's object: a new one, the original's, or none.
    pub object_id: Option<ObjectId>,
    /// Set when the upload is recorded as a duplicate.
    pub duplicate_of: Option<UploadId>,
    /// Whether `object_id` is a new object to insert.
    pub creates_object: bool,
    /// Bytes the namespace stores from now on: only a new object adds to its usage.
    pub stored_bytes: Option<i64>,
    pub message: String,
}

/// Decides a completion. `new_object` is the object the upload would create (when it
/// creates one on confirm); `original` is set when the content was already in the bucket
/// and the upload skips duplicates.
pub fn decide(new_object: Option<ObjectId>, original: Option<Original>, size: i64) -> Decision {
    let (object_id, duplicate_of, creates_object) = match original {
        Some(original) => (original.object_id, Some(original.upload_id), false),
        None => {
            let creates = new_object.is_some();
            (new_object, None, creates)
        }
    };
    let message = match &duplicate_of {
        Some(original) => format!("Duplicate of upload {original}; no new object created"),
        None if creates_object => "Upload confirmed and object created".to_owned(),
        None => "Upload confirmed".to_owned(),
    };
    Decision {
        stored_bytes: creates_object.then_some(size),
        object_id,
        duplicate_of,
        creates_object,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_decide_object_duplicate_usage_and_message() {
        let original = |object: Option<&str>| {
            Some(Original {
                upload_id: "upl_a".into(),
                object_id: object.map(ObjectId::from),
            })
        };
        let new = Some(ObjectId::from("obj_new"));
        let table = [
            // (new object, original, object, duplicate of, creates, stored, message starts)
            (
                new.clone(),
                None,
                Some("obj_new"),
                None,
                true,
                Some(7),
                "Upload confirmed and object",
            ),
            (None, None, None, None, false, None, "Upload confirmed"),
            (
                new.clone(),
                original(Some("obj_a")),
                Some("obj_a"),
                Some("upl_a"),
                false,
                None,
                "Duplicate of upload upl_a",
            ),
            (
                new,
                original(None),
                None,
                Some("upl_a"),
                false,
                None,
                "Duplicate of upload upl_a",
            ),
            (
                None,
                original(Some("obj_a")),
                Some("obj_a"),
                Some("upl_a"),
                false,
                None,
                "Duplicate",
            ),
        ];
        for (new_object, original, object, duplicate_of, creates, stored, message) in table {
            let d = decide(new_object, original, 7);
            assert_eq!(d.object_id.as_deref(), object, "{d:?}");
            assert_eq!(d.duplicate_of.as_deref(), duplicate_of, "{d:?}");
            assert_eq!(d.creates_object, creates, "{d:?}");
            assert_eq!(d.stored_bytes, stored, "{d:?}");
            assert!(d.message.starts_with(message), "{d:?}");
        }
        assert_eq!(decide(None, None, 1).message, "Upload confirmed");
    }
}
