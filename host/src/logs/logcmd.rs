//! The `log show`, `log plot` and `plan` commands: read the logs, run the
//! pure parts ([`summary`](crate::logs::summary), [`plot`](crate::logs::plot),
//! [`learn`](crate::prefetch::learn), [`plan`](crate::prefetch::plan)) and print or write what
//! they give.

use anyhow::{bail, Context, Result};
use feedfs_protocol::io::print_stdout;

use crate::cli::{LogPlotArgs, LogShowArgs, PlanArgs};
use crate::logs::trace::{read_log, Run};
use crate::prefetch::plan::Plan;

/// `feedfs-host log show LOG [--json] [--steps N]`.
pub fn show(args: &LogShowArgs) -> Result<()> {
    let runs = read_log(&args.log)?;
    warn_torn(&runs);
    let summaries: Vec<_> = runs.iter().map(crate::logs::summary::summarize).collect();
    let text = if args.json {
        serde_json::to_string_pretty(&summaries)? + "\n"
    } else if summaries.is_empty() {
        format!("{}: no runs recorded\n", args.log.display())
    } else {
        summaries
            .iter()
            .map(|s| crate::logs::summary::render(s, args.steps))
            .collect()
    };
    print_stdout(|out| out.write_all(text.as_bytes()))?;
    Ok(())
}

/// `feedfs-host log plot LOG -o OUT.svg`: the last run of the log.
pub fn plot(args: &LogPlotArgs) -> Result<()> {
    let runs = read_log(&args.log)?;
    warn_torn(&runs);
    let Some(run) = runs.last() else {
        bail!("{} records no run to draw", args.log.display());
    };
    if runs.len() > 1 {
        eprintln!(
            "feedfs-host: {} holds {} mounts; drawing the last one",
            args.log.display(),
            runs.len()
        );
    }
    crate::logs::plot::plot(run, &args.output)?;
    Ok(())
}

/// `feedfs-host plan LOG... -o PLAN` and `feedfs-host plan --show PLAN`.
pub fn plan(args: &PlanArgs) -> Result<()> {
    if let Some(path) = &args.show {
        let plan = read_plan(path)?;
        let text = plan.render();
        print_stdout(|out| out.write_all(text.as_bytes()))?;
        return Ok(());
    }
    let Some(output) = &args.output else {
        bail!("say where to write the plan with -o PLAN");
    };
    let mut runs = Vec::new();
    for log in &args.logs {
        runs.extend(read_log(log)?);
    }
    warn_torn(&runs);
    let (plan, warnings) = crate::prefetch::learn::learn(&runs, args.window);
    for w in warnings {
        eprintln!("feedfs-host: warning: {w}");
    }
    if plan.steps.is_empty() {
        bail!("the logs record no access to learn from (no demand requests or first reads)");
    }
    std::fs::write(output, plan.encode())
        .with_context(|| format!("cannot write {}", output.display()))?;
    let pages: u64 = plan.steps.iter().map(|s| s.count).sum();
    eprintln!(
        "feedfs-host: wrote {}: {} pages in {} steps over {} files, from {} runs",
        output.display(),
        pages,
        plan.steps.len(),
        plan.files.len(),
        plan.runs
    );
    Ok(())
}

/// Read and check a plan file.
pub fn read_plan(path: &std::path::Path) -> Result<Plan> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the plan {}", path.display()))?;
    Plan::decode(&bytes).with_context(|| format!("{} cannot be used as a plan", path.display()))
}

fn warn_torn(runs: &[Run]) {
    for r in runs.iter().filter(|r| r.torn_bytes > 0) {
        eprintln!(
            "feedfs-host: warning: {}: {} bytes of a record cut short at the end were left out",
            r.label, r.torn_bytes
        );
    }
}
