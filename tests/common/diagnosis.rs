//! Diagnoses as loopspy writes them in JSON (`record`, `render`, `dump`): parsed once, for
//! every test that checks one.

use serde_json::Value;

/// One diagnosis: its kind, title, evidence (label, value) in order, and next step.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub kind: String,
    pub title: String,
    pub evidence: Vec<(String, String)>,
    pub next_step: String,
}

impl Found {
    /// The first evidence labelled `what` ("" if none).
    pub fn ev(&self, what: &str) -> String {
        self.evidence.iter().find(|(w, _)| w == what).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// Every evidence labelled `what`, in order.
    pub fn all_ev(&self, what: &str) -> Vec<String> {
        self.evidence.iter().filter(|(w, _)| w == what).map(|(_, v)| v.clone()).collect()
    }
}

/// A loop's `diagnoses` list; panics on anything else (the schema says what each has).
pub fn parse(list: &Value) -> Vec<Found> {
    let text = |v: &Value, field: &str| v[field].as_str().unwrap_or_else(|| panic!("diagnosis without {field}: {v}")).to_string();
    list.as_array()
        .unwrap_or_else(|| panic!("not a list of diagnoses: {list}"))
        .iter()
        .map(|d| Found {
            kind: text(d, "kind"),
            title: text(d, "title"),
            evidence: d["evidence"]
                .as_array()
                .unwrap_or_else(|| panic!("diagnosis without evidence: {d}"))
                .iter()
                .map(|e| (text(e, "what"), text(e, "value")))
                .collect(),
            next_step: text(d, "next_step"),
        })
        .collect()
}

/// The diagnosis of `kind` in a loop's list, if any.
pub fn of_kind(list: &Value, kind: &str) -> Option<Found> {
    parse(list).into_iter().find(|d| d.kind == kind)
}
