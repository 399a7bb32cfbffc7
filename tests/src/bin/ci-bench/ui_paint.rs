//! Scenario 11: the web UI's page of a job with a big log (1,000,000 lines; 100,000 with
//! `--quick`), in headless Chromium through chromedriver: from navigation start to line 1 on
//! screen, from pressing End to the last line on screen, and from navigation start to the line a
//! `#L` link names (the last one). The page fetches only the lines on screen, so none of these
//! should grow with the log. The times are the page's own `performance` marks, taken when the
//! log view first shows those lines with their text.

use anyhow::{Context, Result};
use ci_tests::browser::Browser;
use serde_json::json;

use crate::client::{submit, wait_done};
use crate::fixtures;
use crate::scenarios::{Ctx, Findings};
use crate::stack::Stack;
use crate::stats::{Goal, Metric, Unit};

/// Rows the page may hold at once: a screenful and its margins, never the log.
const MAX_ROWS_IN_PAGE: u64 = 200;

/// `1000000` → `1,000,000`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub async fn run(ctx: &Ctx) -> Result<Findings> {
    let lines = ctx.sizes.ui_lines;
    let shown_lines = thousands(lines);
    let mut f = Findings::default();
    // No log cap: every line is kept.
    let stack =
        Stack::start(ctx.stack_options(1, &["--log-cap-lines", "0", "--log-cap-bytes", "4g"]))
            .await?;
    let user = stack.db.user("Bench").await;
    let url = stack.server(0).url.clone();
    let zip = fixtures::flood(&ctx.work, lines)?.zip();
    let job = submit(&ctx.http, &url, &user.key, zip).await?;
    let view = wait_done(&ctx.http, &url, &user.key, &job.job_id, ctx.job_timeout()).await?;
    let status = view["status"].as_str().unwrap_or("?").to_owned();
    f.check(
        status == "passed",
        format!("the {shown_lines}-line job passed ({status})"),
    );
    let last_seq = view["last_seq"].as_i64().context("the job's last_seq")?;
    f.check(
        last_seq > lines as i64,
        format!("every line stored ({last_seq} events for {shown_lines} lines)"),
    );

    let browser = Browser::start().await;
    browser.sign_in(&url, &user.key).await;
    let page = format!("{url}/ui/jobs/{}", job.job_id);
    let (mut first, mut end, mut deep) = (Vec::new(), Vec::new(), Vec::new());
    let mut most_rows = 0;
    for run in 0..ctx.sizes.ui_runs {
        // From another page each time, so that every visit is a whole page load.
        browser.goto(&format!("{url}/ui/")).await;
        browser.find("#jobs-body tr").await;
        browser.goto(&page).await;
        first.push(browser.mark("ci:first-line").await);
        let clicked = browser.js("return performance.now()", vec![]).await;
        browser.click("#end").await;
        end.push(browser.mark("ci:last-line").await - clicked.as_f64().unwrap_or_default());
        let rows = browser
            .js(
                "return document.querySelectorAll('.log-row').length",
                vec![],
            )
            .await;
        most_rows = most_rows.max(rows.as_u64().unwrap_or(u64::MAX));

        browser.goto(&format!("{url}/ui/")).await;
        browser.find("#jobs-body tr").await;
        browser.goto(&format!("{page}#L{last_seq}")).await;
        deep.push(browser.mark("ci:last-line").await);
        let shown = browser
            .js(
                "const r = document.querySelector(`.log-row[data-seq=\"${arguments[0]}\"]`); \
                 return r && r.dataset.loaded === '1' && r.classList.contains('selected');",
                vec![json!(last_seq)],
            )
            .await;
        f.check(
            shown == json!(true),
            format!(
                "run {}: the #L{last_seq} link shows that line, highlighted",
                run + 1
            ),
        );
    }
    browser.close().await;
    f.check(
        most_rows < MAX_ROWS_IN_PAGE,
        format!("at most {most_rows} log rows in the page at once (of {last_seq} lines)"),
    );
    f.metrics.push(Metric::new(
        format!("job page of a {shown_lines}-line log: navigation start → line 1 on screen"),
        Unit::Ms,
        Goal::AtMost(1000.0),
        first,
    ));
    f.metrics.push(Metric::new(
        "End pressed → the last line on screen",
        Unit::Ms,
        Goal::AtMost(500.0),
        end,
    ));
    f.metrics.push(Metric::new(
        "#L link to the last line: navigation start → that line on screen",
        Unit::Ms,
        Goal::AtMost(1000.0),
        deep,
    ));
    Ok(f)
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_separated() {
        assert_eq!(super::thousands(1_000_000), "1,000,000");
        assert_eq!(super::thousands(100_000), "100,000");
        assert_eq!(super::thousands(999), "999");
    }
}
