//! Which labels the flow counters carry (--flows.labels). Flows whose
//! chosen labels agree add into one series, so that, say, thousands of pods
//! become tens of workload-to-workload series.

use std::fmt;

use crate::identity::labels::{ALL_SHOWN, LABEL_NAMES};

/// The flow's own labels, in the order they are written; the identity
/// labels ([`LABEL_NAMES`]) follow.
pub const FLOW_LABELS: [&str; 5] = ["src_ip", "src_port", "dst_ip", "dst_port", "role"];

/// One of the flow's own labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowLabel {
    SrcIp = 0,
    SrcPort = 1,
    DstIp = 2,
    DstPort = 3,
    Role = 4,
}

/// A set of the 13 labels: bits 0–4 for [`FLOW_LABELS`], 5–12 for the
/// identity labels.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LabelSelection(u16);

impl FlowLabel {
    /// In the order of [`FLOW_LABELS`].
    pub const ALL: [FlowLabel; FLOW_LABELS.len()] = [
        FlowLabel::SrcIp,
        FlowLabel::SrcPort,
        FlowLabel::DstIp,
        FlowLabel::DstPort,
        FlowLabel::Role,
    ];
}

impl LabelSelection {
    /// Every label: the default.
    pub fn all() -> LabelSelection {
        LabelSelection((1 << (FLOW_LABELS.len() + LABEL_NAMES.len())) - 1)
    }

    pub fn is_all(self) -> bool {
        self == LabelSelection::all()
    }

    pub fn has(self, label: FlowLabel) -> bool {
        self.0 & (1 << label as u16) != 0
    }

    /// The identity labels chosen, as bits of [`LABEL_NAMES`].
    pub fn identity(self) -> u8 {
        (self.0 >> FLOW_LABELS.len()) as u8
    }

    /// Whether this set has any of the flow's own labels that mark the
    /// overflow flow (`src_ip`, `dst_ip`, `role`).
    pub fn marks_overflow_by_flow_labels(self) -> bool {
        [FlowLabel::SrcIp, FlowLabel::DstIp, FlowLabel::Role]
            .into_iter()
            .any(|label| self.has(label))
    }

    /// Parses `src_namespace,src_workload,path`: names from [`FLOW_LABELS`]
    /// and [`LABEL_NAMES`], each once, at least one.
    pub fn parse(text: &str) -> Result<LabelSelection, String> {
        let mut bits = 0u16;
        for name in text.split(',').map(str::trim) {
            if name.is_empty() {
                return Err(format!(
                    "{text:?} has an empty label name; give a comma-separated list of {}",
                    known()
                ));
            }
            let Some(index) = all_names().position(|known| known == name) else {
                return Err(format!("unknown label {name:?}: choose from {}", known()));
            };
            if bits & (1 << index) != 0 {
                return Err(format!("label {name:?} is listed twice"));
            }
            bits |= 1 << index;
        }
        Ok(LabelSelection(bits))
    }
}

impl Default for LabelSelection {
    fn default() -> LabelSelection {
        LabelSelection::all()
    }
}

fn all_names() -> impl Iterator<Item = &'static str> {
    FLOW_LABELS.into_iter().chain(LABEL_NAMES)
}

fn known() -> String {
    all_names().collect::<Vec<_>>().join(", ")
}

impl fmt::Debug for LabelSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = all_names()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, name)| name)
            .collect();
        write!(f, "{}", names.join(","))
    }
}

const _: () = assert!(ALL_SHOWN as u16 == (1 << LABEL_NAMES.len()) - 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_into_their_bits_and_back() {
        let chosen =
            LabelSelection::parse("src_namespace,src_workload,dst_kind,dst_name,path,role")
                .unwrap();
        assert!(chosen.has(FlowLabel::Role) && !chosen.has(FlowLabel::SrcIp));
        // src_namespace, src_workload, dst_kind, dst_name, path.
        assert_eq!(chosen.identity(), 0b1010_1101);
        assert_eq!(
            format!("{chosen:?}"),
            "role,src_namespace,src_workload,dst_kind,dst_name,path"
        );
        assert!(LabelSelection::all().is_all());
        assert_eq!(LabelSelection::all().identity(), ALL_SHOWN);
    }

    #[test]
    fn bad_lists_say_why_in_one_line() {
        for (text, want) in [
            (
                "src_ip,dst_zone",
                "unknown label \"dst_zone\": choose from src_ip, ",
            ),
            ("", "has an empty label name"),
            ("src_ip,,role", "has an empty label name"),
            ("path,path", "label \"path\" is listed twice"),
        ] {
            let error = LabelSelection::parse(text).unwrap_err();
            assert!(
                error.starts_with(want) || error.contains(want),
                "{text:?}: {error}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_selection_or_one_of_three_errors(text in "[a-z_, ]{0,60}|\\PC{0,40}") {
            if let Err(error) = LabelSelection::parse(&text) {
                proptest::prop_assert!(
                    ["has an empty label name", "unknown label ", "is listed twice"]
                        .iter()
                        .any(|want| error.contains(want)),
                    "{text:?}: {error}"
                );
                proptest::prop_assert!(!error.contains('\n'));
            }
        }

        #[test]
        fn any_list_of_known_names_gives_exactly_those_labels(
            chosen in proptest::sample::subsequence(all_names().collect::<Vec<_>>(), 1..=13),
            spaces in proptest::collection::vec(" {0,2}", 13),
        ) {
            let text: Vec<String> = chosen
                .iter()
                .zip(&spaces)
                .map(|(name, pad)| format!("{pad}{name}{pad}"))
                .collect();
            let selection = LabelSelection::parse(&text.join(",")).unwrap();
            let want: u16 = all_names()
                .enumerate()
                .filter(|(_, name)| chosen.contains(name))
                .map(|(i, _)| 1 << i)
                .sum();
            proptest::prop_assert_eq!(selection.0, want);
        }
    }
}
