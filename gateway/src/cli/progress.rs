//! Progress bars for the long commands (backup, restore, import, demo-data, purge): drawn on stderr
//! only when stderr is a terminal, so tests, pipes and logs get no control characters.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What a bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    /// Rows, events, lines: plain counts named by `what`.
    Items,
}

/// A bar of `total` (0: not known yet) with a message; hidden when stderr is not a terminal.
pub fn bar(what: &str, total: u64, unit: Unit) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let template = match unit {
        Unit::Bytes => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        Unit::Items => "{msg} [{bar:30}] {human_pos}/{human_len} eta {eta}",
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(Some(total), target).with_style(style);
    bar.set_message(what.to_owned());
    bar
}

/// A `(done, total)` callback that moves `bar`.
pub fn follow(bar: &ProgressBar) -> impl FnMut(u64, u64) + '_ {
    move |done, total| {
        if bar.length() != Some(total) {
            bar.set_length(total);
        }
        bar.set_position(done);
    }
}

/// A spinner for a step whose size is not known (it ticks by itself); hidden like [`bar`].
pub fn spinner(what: &str) -> ProgressBar {
    let bar = bar(what, 0, Unit::Items);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
