//! The installers' credential sheet: a standalone HTML file, one card per device (ids and
//! the password only, no names), laid out to print and be signed for. It holds secrets:
//! the command writes it owner-only and tells the operator to destroy it after installation.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::domain::{DeviceKind, ResidentId};

/// One device's card.
#[derive(Debug, Clone)]
pub struct Card {
    pub device: String,
    pub kind: DeviceKind,
    pub resident: Option<ResidentId>,
    pub serial: Option<String>,
    pub password: String,
}

/// The print layout: cards never split across pages; screen and paper look the same.
const STYLE: &str = "\
body{font-family:sans-serif;margin:1cm}\
.warning{border:2px solid #000;padding:.5em;font-weight:bold}\
.cards{display:flex;flex-wrap:wrap;gap:.5cm}\
.card{border:1px solid #000;padding:.4cm;width:8.5cm;break-inside:avoid;page-break-inside:avoid}\
.card dt{font-size:.8em;margin-top:.2em}\
.card dd{margin:0;font-family:monospace;font-size:1.1em}\
.card .password{font-size:1.3em;letter-spacing:.08em}\
.sign{margin-top:.8cm;border-top:1px solid #000;font-size:.8em}\
@media print{body{margin:0}.warning{font-size:.9em}}";

pub fn render(cards: &[Card], broker: Option<&str>) -> String {
    let page: Markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Device credentials" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                p .warning {
                    "CONFIDENTIAL: these are device passwords. Keep this sheet with you, give it to no one, "
                    "and shred it once the devices are installed. A lost sheet means rotating the credentials "
                    "(tec-gateway device provision ID --rotate)."
                }
                @if let Some(broker) = broker {
                    p { "Broker: " code { (broker) } }
                }
                div .cards {
                    @for card in cards {
                        section .card {
                            dl {
                                dt { "Device id (MQTT user name and client id)" }
                                dd { (card.device) }
                                dt { "Kind" }
                                dd { (kind_name(card.kind)) }
                                @if let Some(serial) = &card.serial {
                                    dt { "Serial" }
                                    dd { (serial) }
                                }
                                dt { "Resident id" }
                                dd { (card.resident.as_ref().map_or("(not assigned)", |r| r.as_str())) }
                                dt { "Password" }
                                dd .password { (card.password) }
                            }
                            p .sign { "Installed by (signature, date)" }
                        }
                    }
                }
            }
        }
    };
    page.into_string()
}

/// A kind's snake_case name, as `--kind` and the CSV take it.
pub fn kind_name(kind: DeviceKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn one_card_per_device_with_escaped_text() {
        let cards = [
            Card {
                device: "pend-1".into(),
                kind: DeviceKind::Pendant,
                resident: Some(ResidentId::new("R<1>").unwrap()),
                serial: Some("SN&1".into()),
                password: "Abc123".into(),
            },
            Card {
                device: "smoke-1".into(),
                kind: DeviceKind::SmokeDetector,
                resident: None,
                serial: None,
                password: "Xyz789".into(),
            },
        ];
        let html = render(&cards, Some("mqtts://broker.example:8883"));
        assert_eq!(html.matches("<section class=\"card\">").count(), 2);
        assert!(html.contains("R&lt;1&gt;") && html.contains("SN&amp;1"));
        assert!(html.contains("smoke_detector") && html.contains("(not assigned)"));
        assert!(html.contains("Abc123") && html.contains("Xyz789"));
        assert!(html.contains("CONFIDENTIAL"));
    }
}
