//! JSON-patch `add` operations at targeted paths, shared by every cloud's injection: append to
//! an array that exists, create it whole where it does not (also when an earlier operation of
//! the same patch created it).

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, PatchOperation};
use serde_json::Value;

/// Where a container sits in the pod.
pub struct ContainerAt {
    pub list: &'static str,
    pub index: usize,
}

impl ContainerAt {
    /// `/spec/<list>/<index>/<field>`, with `/-` appended when `append`.
    pub fn path(&self, field: &'static str, append: bool) -> PointerBuf {
        let mut path = PointerBuf::from_tokens([
            Token::from("spec"),
            Token::from(self.list),
            Token::from(self.index),
            Token::from(field),
        ]);
        if append {
            path.push_back("-");
        }
        path
    }
}

/// Appends `items` to an existing array, or adds the array when the container has none.
pub fn push_adds(
    at: &ContainerAt,
    field: &'static str,
    exists: bool,
    items: impl IntoIterator<Item = Value>,
    ops: &mut Vec<PatchOperation>,
) {
    if exists {
        ops.extend(
            items
                .into_iter()
                .map(|value| add(at.path(field, true), value)),
        );
    } else {
        let items: Vec<Value> = items.into_iter().collect();
        if !items.is_empty() {
            ops.push(add(at.path(field, false), Value::Array(items)));
        }
    }
}

/// Adds `volume` to `spec.volumes`, creating the array when the pod has none.
pub fn add_volume(exists: bool, volume: Value) -> PatchOperation {
    if exists {
        add(PointerBuf::from_tokens(["spec", "volumes", "-"]), volume)
    } else {
        add(
            PointerBuf::from_tokens(["spec", "volumes"]),
            Value::Array(vec![volume]),
        )
    }
}

/// Whether an earlier operation of `ops` adds exactly `path` (an array or map it created).
pub fn creates(ops: &[PatchOperation], path: &PointerBuf) -> bool {
    ops.iter()
        .any(|op| matches!(op, PatchOperation::Add(a) if &a.path == path))
}

/// An `add` operation.
pub fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}
