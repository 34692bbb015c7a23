//! Exercises every `Doc` accessor on every member of a decoded request.

use riffle_wire::{Doc, Value};

pub fn walk(doc: &Doc<'_>) {
    let names: Vec<&str> = doc.members().map(|(name, _)| name).collect();
    for name in names.iter().copied().chain(["Absent"]) {
        let _ = doc.path(name);
        let _ = doc.raw(name);
        let _ = doc.str_opt(name);
        let _ = doc.str_required(name);
        let _ = doc.int_opt(name);
        let _ = doc.int_required(name);
        let _ = doc.bool_opt(name);
        let _ = doc.blob_opt(name);
        let _ = doc.blob_required(name);
        let _ = doc.timestamp_opt(name);
        let _ = doc.str_list_opt(name);
        let _ = doc.map_opt(name);
        if let Ok(Some(child)) = doc.doc_opt(name) {
            walk(&child);
        }
        if let Ok(Some(items)) = doc.list_opt(name) {
            for item in &items {
                walk(item);
            }
        }
        if let Some(Value::List(items)) = doc.raw(name) {
            let _ = items.len();
        }
    }
}
