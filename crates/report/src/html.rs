//! The ladder as one self-contained HTML file: an SVG diagram (one `<g class="arrow">` per
//! message, failures in red, the divergence noted) where clicking an arrow shows its raw text.

use crate::Ladder;
use std::fmt::Write as _;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Ladder {
    pub fn to_html(&self) -> String {
        let lane_w = 220.0;
        let left = 80.0;
        let top = 60.0;
        let row = 26.0;
        let lanes = self.lanes.len().max(1) as f64;
        // Wide enough for the divergence note too (about 7.2 px per monospace character).
        let note_w = self.divergence.as_ref().map_or(0.0, |d| {
            left + d.lane as f64 * lane_w + lane_w / 2.0 + 20.0 + 7.2 * (d.text.len() + 10) as f64
        });
        let width = (left + lanes * lane_w + 20.0).max(note_w);
        let extra = usize::from(self.divergence.is_some());
        let height = top + (self.arrows.len() + extra + 1) as f64 * row + 20.0;
        let x = |i: usize| left + i as f64 * lane_w + lane_w / 2.0;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="12"><defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>"##
        );
        for (i, lane) in self.lanes.iter().enumerate() {
            let _ = write!(
                svg,
                r##"<text class="lane" x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4 3"/>"##,
                x(i),
                top - 20.0,
                esc(&lane.title),
                x(i),
                top - 10.0,
                x(i),
                height - 10.0
            );
        }
        let mut y = top;
        let mut div = self.divergence.clone();
        let note = |svg: &mut String, y: f64, d: &crate::ladder::Divergence| {
            let _ = write!(
                svg,
                r##"<g class="divergence"><circle cx="{:.1}" cy="{y:.1}" r="6" fill="#c00"/><text x="{:.1}" y="{:.1}" fill="#c00">diverged: {}</text></g>"##,
                x(d.lane),
                x(d.lane) + 10.0,
                y + 4.0,
                esc(&d.text)
            );
        };
        for (i, a) in self.arrows.iter().enumerate() {
            if let Some(d) = div.take_if(|d| d.at_ms <= a.at_ms) {
                note(&mut svg, y, &d);
                y += row;
            }
            let color = if a.is_failure() {
                "#c00"
            } else if a.is_response() {
                "#2a6"
            } else {
                "#246"
            };
            let (x1, x2) = (x(a.from), x(a.to));
            let mut label = a.label.clone();
            if self.arrows.iter().any(|b| b.call > 1) {
                label = format!("[{}] {label}", a.call);
            }
            if let Some(s) = &a.sdp {
                label = format!("{label} ({s})");
            }
            let dash = if a.is_response() {
                r#" stroke-dasharray="6 3""#
            } else {
                ""
            };
            let _ = write!(
                svg,
                r##"<g class="arrow" data-i="{i}" style="cursor:pointer"><title>{node}</title><text x="4" y="{ty:.1}" fill="#666">{t:.3}</text><line x1="{x1:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="{color}" stroke-width="1.6"{dash} marker-end="url(#head)"/><text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" fill="{color}">{label}</text></g>"##,
                node = esc(&a.node.clone().map_or_else(
                    || "click for the message".to_owned(),
                    |n| format!("node {n}: click for the message")
                )),
                ty = y + 4.0,
                t = a.at_ms / 1000.0,
                lx = (x1 + x2) / 2.0,
                ly = y - 4.0,
                label = esc(&label),
            );
            y += row;
        }
        if let Some(d) = div {
            note(&mut svg, y, &d);
        }
        svg.push_str("</svg>");
        let raws: Vec<&str> = self.arrows.iter().map(|a| a.raw.as_str()).collect();
        let data = serde_json::to_string(&raws)
            .unwrap_or_else(|_| "[]".to_owned())
            .replace("</", "<\\/");
        let outcome = self
            .outcome
            .map_or_else(String::new, |o| format!("{o:?}").to_uppercase());
        format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} — callflow ladder</title>
<style>body{{font-family:sans-serif;margin:16px}} #raw{{white-space:pre-wrap;background:#f5f5f5;border:1px solid #ccc;padding:8px;font-size:12px;min-height:4em}} .arrow:hover text{{font-weight:bold}}</style>
</head><body>
<h2>{title} <small id="outcome">{outcome}</small></h2>
<div id="ladder">{svg}</div>
<h3>Message</h3><pre id="raw">Click an arrow to see the message as it crossed the wire.</pre>
<script type="application/json" id="messages">{data}</script>
<script>
const messages = JSON.parse(document.getElementById('messages').textContent);
for (const g of document.querySelectorAll('.arrow')) {{
  g.addEventListener('click', () => {{ document.getElementById('raw').textContent = messages[Number(g.dataset.i)]; }});
}}
document.body.dataset.arrows = String(document.querySelectorAll('.arrow').length);
</script>
</body></html>
"#,
            title = esc(&self.title),
        )
    }
}
