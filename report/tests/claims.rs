//! Claim verdicts on fixture records built so that every verdict occurs, with intervals checked
//! against values computed by hand; and the embedded claims file against the paper's tables.

use report::claims::{bootstrap_interval, evaluate, t_interval, ClaimsFile, Method, Outcome, Verdict};
use report::paper::PaperResults;
use report::records::{CellRecord, PairStats, Telemetry};
use std::collections::BTreeMap;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// A finished cell: accuracy in percent, conflict rate of the baseline's main pair as a fraction.
fn cell(baseline: &str, harmonizer: &str, task: &str, seed: u64, accuracy: f64) -> CellRecord {
    let pair = match baseline {
        "mcd" => "stepB",
        "dwl" => "balance",
        _ => "transfer/cls",
    };
    let mut pairs = BTreeMap::new();
    pairs.insert(pair.to_owned(), PairStats { measured_steps: 100, conflict_rate: Some(0.5), mean_w1: None, mean_w2: None });
    let (method, alpha) = match harmonizer.split_once("(α=") {
        Some((m, a)) => (m.to_owned(), a.trim_end_matches(')').parse().unwrap()),
        None => (harmonizer.to_owned(), 0.5),
    };
    CellRecord {
        hash: format!("{baseline}-{harmonizer}-{task}-{seed}"),
        dataset: "digits".into(),
        task: task.into(),
        baseline: baseline.into(),
        harmonizer: harmonizer.into(),
        harmonizer_method: method,
        alpha,
        seed,
        diverged_at: None,
        not_trained: None,
        final_accuracy: Some(accuracy),
        best_accuracy: Some(accuracy),
        seconds_per_epoch: 1.0,
        seconds_per_100_steps: 10.0,
        train_seconds: 60.0,
        timing_loaded: Some(false),
        phases: None,
        wall_seconds: None,
        iterations: 100,
        deviations: vec!["fixture: reduced schedule".into()],
        device: "cpu".into(),
        libtorch: Some("2.11.0+cu130".into()),
        suite_version: "0.2.0".into(),
        pairs,
        evaluations: vec![(100, accuracy)],
        telemetry: Vec::new(),
    }
}

fn with_conflict_rate(mut r: CellRecord, rate: f64) -> CellRecord {
    for p in r.pairs.values_mut() {
        p.conflict_rate = Some(rate);
    }
    r
}

fn claims(text: &str) -> (Vec<report::claims::Claim>, report::claims::Settings) {
    let file = ClaimsFile::parse(text).unwrap();
    (file.claims().unwrap(), file.settings)
}

const SETTINGS: &str = r#"
[settings]
confidence = 0.95
min_seeds = 3
bootstrap_resamples = 10000
bootstrap_seed = 7
max_width = { points = 5.0, percent = 20.0, ratio = 0.5 }
"#;

fn outcome<'a>(outcomes: &'a [Outcome], id: &str) -> &'a Outcome {
    outcomes.iter().find(|o| o.claim.id == id).unwrap_or_else(|| panic!("no outcome {id}"))
}

#[test]
fn t_intervals_match_hand_computed_values() {
    // mean 2, sd 1, n 3: t(0.975, 2) = 4.302653, half-width 4.302653 / sqrt(3) = 2.484138.
    let (m, lo, hi) = t_interval(&[1.0, 2.0, 3.0], 0.95);
    assert!(close(m, 2.0, 1e-12) && close(lo, -0.484138, 1e-5) && close(hi, 4.484138, 1e-5), "{lo} {hi}");
    // n 2, values 0 and 2: sd sqrt(2), se 1, t(0.975, 1) = 12.706205.
    let (_, lo, hi) = t_interval(&[0.0, 2.0], 0.95);
    assert!(close(lo, 1.0 - 12.706205, 1e-4) && close(hi, 1.0 + 12.706205, 1e-4), "{lo} {hi}");
    // One value: no interval.
    let (m, lo, hi) = t_interval(&[3.0], 0.95);
    assert!(m == 3.0 && lo.is_infinite() && hi.is_infinite());
}

#[test]
fn bootstrap_intervals_match_their_exact_distributions() {
    // One unit, seeds {0, 1}: the resampled mean is 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4.
    assert_eq!(bootstrap_interval(&[vec![0.0, 1.0]], 0.95, 10_000, 1), (0.0, 1.0));
    // Two units of one value each: the mean over two drawn units is a, (a+b)/2 or b (1/4, 1/2, 1/4).
    assert_eq!(bootstrap_interval(&[vec![1.0], vec![3.0]], 0.95, 10_000, 2), (1.0, 3.0));
    // One unit {0, 0, 0, 1}: P(mean = 1) = 1/256 < 2.5% < P(mean >= 3/4) = 13/256, P(mean = 0) = 81/256.
    assert_eq!(bootstrap_interval(&[vec![0.0, 0.0, 0.0, 1.0]], 0.95, 10_000, 3), (0.0, 0.75));
    // The generator is seeded: the same call gives the same interval.
    let units = vec![vec![0.3, 1.2, 0.8], vec![2.0, 1.1, 1.7], vec![0.1, 0.4, 0.9]];
    assert_eq!(bootstrap_interval(&units, 0.95, 2_000, 9), bootstrap_interval(&units, 0.95, 2_000, 9));
}

#[test]
fn each_verdict_occurs_with_hand_computed_intervals() {
    let text = format!(
        "{SETTINGS}{}",
        r#"
[[claim]]
id = "gain-reproduced"
words = "MCD+GH gains 2.5 on M-U"
source = "fixture"
type = "directional"
paper = 2.5
quantity = { kind = "gain", dataset = "digits", tasks = ["M-U"], baselines = ["mcd"], harmonizer = "gh" }

[[claim]]
id = "gain-not-reproduced"
words = "MCD+GH gains 2.7 on U-M"
source = "fixture"
type = "directional"
paper = 2.7
quantity = { kind = "gain", dataset = "digits", tasks = ["U-M"], baselines = ["mcd"], harmonizer = "gh" }

[[claim]]
id = "gain-inconclusive-contains-zero"
words = "DWL+GH gains 1.0 on M-U"
source = "fixture"
type = "directional"
paper = 1.0
quantity = { kind = "gain", dataset = "digits", tasks = ["M-U"], baselines = ["dwl"], harmonizer = "gh" }

[[claim]]
id = "gain-inconclusive-two-seeds"
words = "CDAN+GH gains 1.0 on M-U"
source = "fixture"
type = "directional"
paper = 1.0
quantity = { kind = "gain", dataset = "digits", tasks = ["M-U"], baselines = ["cdan"], harmonizer = "gh" }

[[claim]]
id = "gain-not-run"
words = "CDAN+GH gains 1.5 on Office-31"
source = "fixture"
type = "directional"
paper = 1.5
quantity = { kind = "gain", dataset = "office31", tasks = "Avg‡", baselines = ["cdan"], harmonizer = "gh" }

[[claim]]
id = "gain-averaged-bootstrap"
words = "GVB+GH gains 2 on Avg of Digits"
source = "fixture"
type = "directional"
paper = 2.0
quantity = { kind = "gain", dataset = "digits", tasks = "Avg", baselines = ["gvb"], harmonizer = "gh" }

[[claim]]
id = "rate-reproduced"
words = "about 42% in MCD"
source = "fixture"
type = "value"
paper = 42.0
tolerance = 5.0
quantity = { kind = "conflict_rate", dataset = "digits", tasks = ["M-U"], baseline = "mcd" }

[[claim]]
id = "rate-not-reproduced"
words = "about 37% in DWL"
source = "fixture"
type = "value"
paper = 37.0
tolerance = 5.0
quantity = { kind = "conflict_rate", dataset = "digits", tasks = ["M-U"], baseline = "dwl" }

[[claim]]
id = "rate-too-wide"
words = "about 42% in MCD on U-M"
source = "fixture"
type = "value"
paper = 42.0
tolerance = 5.0
quantity = { kind = "conflict_rate", dataset = "digits", tasks = ["U-M"], baseline = "mcd" }
"#
    );
    let (claims, settings) = claims(&text);
    let mut records = Vec::new();
    // MCD on M-U: GH - none = 2.0, 2.5, 3.0, 2.5, 2.0 -> mean 2.4, sd sqrt(0.175), t(0.975, 4) = 2.776445,
    // half-width 2.776445 * 0.4183300 / sqrt(5) = 0.519419. Conflict rates 40, 42, 44, 41, 43 % -> mean 42,
    // sd sqrt(2.5), half-width 2.776445 * 1.5811388 / sqrt(5) = 1.963243.
    for (seed, (gain, rate)) in [(2.0, 0.40), (2.5, 0.42), (3.0, 0.44), (2.5, 0.41), (2.0, 0.43)].into_iter().enumerate() {
        let seed = seed as u64 + 1;
        records.push(with_conflict_rate(cell("mcd", "none", "M-U", seed, 90.0), rate));
        records.push(cell("mcd", "gh", "M-U", seed, 90.0 + gain));
    }
    // MCD on U-M: GH loses 2 to 3.5 points; conflict rates 10..90 % (too wide to judge).
    for (seed, (loss, rate)) in [(2.0, 0.1), (3.0, 0.9), (2.5, 0.5), (3.5, 0.2), (2.0, 0.8)].into_iter().enumerate() {
        let seed = seed as u64 + 1;
        records.push(with_conflict_rate(cell("mcd", "none", "U-M", seed, 90.0), rate));
        records.push(cell("mcd", "gh", "U-M", seed, 90.0 - loss));
    }
    // DWL on M-U: gains -1, +1, 0, +2, -2 (mean 0, interval contains 0); conflict rates near 60 %.
    for (seed, (gain, rate)) in [(-1.0, 0.60), (1.0, 0.62), (0.0, 0.58), (2.0, 0.61), (-2.0, 0.59)].into_iter().enumerate() {
        let seed = seed as u64 + 1;
        records.push(with_conflict_rate(cell("dwl", "none", "M-U", seed, 80.0), rate));
        records.push(cell("dwl", "gh", "M-U", seed, 80.0 + gain));
    }
    // CDAN: two seeds only, both clearly positive.
    for seed in [1, 2] {
        records.push(cell("cdan", "none", "M-U", seed, 90.0));
        records.push(cell("cdan", "gh", "M-U", seed, 93.0 + seed as f64 * 0.1));
    }
    // GVB: +1 on every seed of M-U, +3 on every seed of U-M (3 seeds each), S-M not run.
    for seed in 1..=3 {
        for (task, gain) in [("M-U", 1.0), ("U-M", 3.0)] {
            records.push(cell("gvb", "none", task, seed, 85.0));
            records.push(cell("gvb", "gh", task, seed, 85.0 + gain));
        }
    }
    let outcomes = evaluate(&claims, &records, &report::speed::speeds(None, &records), &PaperResults::embedded().unwrap(), &settings);

    let o = outcome(&outcomes, "gain-reproduced");
    let e = o.estimate.as_ref().unwrap();
    assert_eq!(o.verdict, Verdict::Reproduced, "{}", o.reason);
    assert_eq!((e.n, e.units, e.min_seeds, e.method), (5, 1, 5, Method::TOverSeeds { df: 4 }));
    assert!(close(e.mean, 2.4, 1e-9) && close(e.lo, 2.4 - 0.519419, 1e-5) && close(e.hi, 2.4 + 0.519419, 1e-5), "{e:?}");
    assert!(o.reason.contains("inside"), "{}", o.reason);
    assert!(o.deviations.contains(&"fixture: reduced schedule".to_owned()));

    let o = outcome(&outcomes, "gain-not-reproduced");
    assert_eq!(o.verdict, Verdict::NotReproduced, "{}", o.reason);
    assert!(o.estimate.as_ref().unwrap().hi < 0.0);

    let o = outcome(&outcomes, "gain-inconclusive-contains-zero");
    assert_eq!(o.verdict, Verdict::Inconclusive, "{}", o.reason);
    assert!(o.reason.contains("contains"), "{}", o.reason);

    let o = outcome(&outcomes, "gain-inconclusive-two-seeds");
    assert_eq!(o.verdict, Verdict::Inconclusive);
    assert!(o.reason.contains("fewer than 3"), "{}", o.reason);
    assert!(o.estimate.as_ref().unwrap().lo > 0.0, "the interval alone would have said reproduced");

    let o = outcome(&outcomes, "gain-not-run");
    assert_eq!((o.verdict, o.estimate.is_none()), (Verdict::NotRun, true));

    // Two units (M-U +1, U-M +3, no spread within): the bootstrap's mean over two drawn units is 1, 2
    // or 3 with probabilities 1/4, 1/2, 1/4, so the interval is [1, 3]; S-M is reported missing.
    let o = outcome(&outcomes, "gain-averaged-bootstrap");
    let e = o.estimate.as_ref().unwrap();
    assert_eq!((e.mean, e.lo, e.hi, e.units, e.n), (2.0, 1.0, 3.0, 2, 6));
    assert!(matches!(e.method, Method::Bootstrap { resamples: 10_000 }));
    assert_eq!(o.verdict, Verdict::Reproduced);
    assert!(o.deviations.iter().any(|d| d.contains("covers 2 of the claim's 3 units") && d.contains("GVB S→M")), "{:?}", o.deviations);

    let o = outcome(&outcomes, "rate-reproduced");
    let e = o.estimate.as_ref().unwrap();
    assert!(close(e.mean, 42.0, 1e-9) && close(e.lo, 42.0 - 1.963243, 1e-5) && close(e.hi, 42.0 + 1.963243, 1e-5), "{e:?}");
    assert_eq!(o.verdict, Verdict::Reproduced, "{}", o.reason);

    let o = outcome(&outcomes, "rate-not-reproduced");
    assert_eq!(o.verdict, Verdict::NotReproduced, "{}", o.reason);

    let o = outcome(&outcomes, "rate-too-wide");
    assert_eq!(o.verdict, Verdict::Inconclusive, "{}", o.reason);
    assert!(o.reason.contains("wider"), "{}", o.reason);

    // Outputs: the markdown table names every checked claim, CSV has one row per claim.
    let md = report::claims::markdown(&outcomes, "fixture", &settings);
    assert!(md.starts_with("# The paper's claims") && md.contains("3 reproduced, 2 not reproduced, 3 inconclusive, 1 not run"), "{md}");
    for o in outcomes.iter().filter(|o| o.estimate.is_some()) {
        assert!(md.contains(&format!("`{}`", o.claim.id)), "{} missing from claims.md", o.claim.id);
    }
    assert!(md.contains("## Not run in this profile (1)"));
    assert_eq!(report::claims::csv(&outcomes).lines().count(), outcomes.len() + 1);
    let tex = report::claims::latex(&outcomes, "fixture", &settings);
    assert!(tex.contains("\\toprule") && tex.contains("not reproduced") && !tex.contains("gain-not-run"));
}

#[test]
fn diverged_runs_are_left_out_and_said() {
    let text = format!(
        "{SETTINGS}{}",
        r#"
[[claim]]
id = "gain"
words = "x"
source = "fixture"
type = "directional"
paper = 1.0
quantity = { kind = "gain", dataset = "digits", tasks = ["M-U"], baselines = ["mcd"], harmonizer = "gh" }
"#
    );
    let (claims, settings) = claims(&text);
    let mut records = Vec::new();
    for seed in 1..=4 {
        records.push(cell("mcd", "none", "M-U", seed, 90.0));
        let mut gh = cell("mcd", "gh", "M-U", seed, 91.0 + seed as f64 * 0.1);
        if seed == 4 {
            gh.diverged_at = Some(50);
            gh.final_accuracy = None;
        }
        records.push(gh);
    }
    let outcomes = evaluate(&claims, &records, &report::speed::speeds(None, &records), &PaperResults::embedded().unwrap(), &settings);
    let o = &outcomes[0];
    assert_eq!(o.estimate.as_ref().unwrap().n, 3);
    assert!(o.deviations.iter().any(|d| d.contains("MCD M→U seed 4: a diverged run has no accuracy")), "{:?}", o.deviations);
}

#[test]
fn telemetry_time_and_alpha_quantities() {
    let text = format!(
        "{SETTINGS}{}",
        r#"
[[claim]]
id = "residual"
words = "after GH all inner products are positive"
source = "fixture"
type = "value"
paper = 0.0
tolerance = 0.0
quantity = { kind = "residual_conflicts", dataset = "digits", tasks = ["M-U"], baseline = "mcd", harmonizer = "gh" }

[[claim]]
id = "inner"
words = "mean inner product above zero"
source = "fixture"
type = "directional"
direction = "positive"
quantity = { kind = "inner_product_mean", dataset = "digits", tasks = ["M-U"], baseline = "mcd" }

[[claim]]
id = "time"
words = "GH costs 18% more"
source = "fixture"
type = "value"
paper = 1.18
tolerance = 0.1
quantity = { kind = "time_ratio", dataset = "digits", tasks = ["M-U"], baseline = "mcd", harmonizer = "gh" }

[[claim]]
id = "alpha"
words = "alpha 0.5 is best"
source = "fixture"
type = "directional"
direction = "positive"
quantity = { kind = "alpha_best", dataset = "digits", tasks = ["M-U"], baselines = ["mcd"], best = 0.5 }
"#
    );
    let (claims, settings) = claims(&text);
    let tele = |d: f64, d_after: f64| Telemetry { iteration: 0, pair: "stepB".into(), d, cos: 0.0, conflict: d < 0.0, w1: 1.0, w2: 1.0, d_after: Some(d_after), norm1: 1.0, norm2: 1.0 };
    let mut records = Vec::new();
    for seed in 1..=3u64 {
        let mut none = cell("mcd", "none", "M-U", seed, 90.0);
        // Mean inner product per seed: (3 - 1) / 2 = 1.
        none.telemetry = vec![tele(3.0, 3.0), tele(-1.0, -1.0)];
        records.push(none);
        let mut gh = cell("mcd", "gh", "M-U", seed, 91.0);
        // Seed 3 leaves one of four harmonized products negative: 25 %.
        gh.telemetry = vec![tele(-1.0, 0.5), tele(2.0, 2.0), tele(-0.5, 0.0), tele(1.0, if seed == 3 { -0.1 } else { 1.0 })];
        gh.seconds_per_100_steps = 10.0 * (1.1 + 0.05 * seed as f64);
        records.push(gh);
        // GH++ at alpha 0.5 beats the mean of 0.25 and 0.75 by 1 point on every seed.
        records.push(cell("mcd", "gh++", "M-U", seed, 92.0));
        records.push(cell("mcd", "gh++(α=0.25)", "M-U", seed, 90.0));
        records.push(cell("mcd", "gh++(α=0.75)", "M-U", seed, 92.0));
    }
    let outcomes = evaluate(&claims, &records, &report::speed::speeds(None, &records), &PaperResults::embedded().unwrap(), &settings);
    let e = outcome(&outcomes, "residual").estimate.clone().unwrap();
    assert!(close(e.mean, 25.0 / 3.0, 1e-9), "{e:?}");
    let e = outcome(&outcomes, "inner").estimate.clone().unwrap();
    assert_eq!((e.mean, e.lo, e.hi), (1.0, 1.0, 1.0));
    assert_eq!(outcome(&outcomes, "inner").verdict, Verdict::Reproduced);
    // Ratios 1.15, 1.20, 1.25: mean 1.2, sd 0.05, half-width 4.302653 * 0.05 / sqrt(3) = 0.124207.
    let o = outcome(&outcomes, "time");
    let e = o.estimate.as_ref().unwrap();
    assert!(close(e.mean, 1.2, 1e-9) && close(e.hi, 1.2 + 0.124207, 1e-5), "{e:?}");
    assert_eq!(o.verdict, Verdict::Reproduced);
    assert!(o.deviations.iter().any(|d| d.contains("Speed from the grid's cells")), "{:?}", o.deviations);
    let o = outcome(&outcomes, "alpha");
    assert_eq!(o.estimate.as_ref().map(|e| e.mean), Some(1.0));
    assert_eq!(o.verdict, Verdict::Reproduced);
}

#[test]
fn malformed_claims_are_rejected_with_the_reason() {
    let bad_kind = format!("{SETTINGS}[[claim]]\nid = \"x\"\nwords = \"w\"\nsource = \"s\"\ntype = \"directional\"\npaper = 1.0\nquantity = {{ kind = \"gian\", dataset = \"digits\", tasks = [\"M-U\"] }}\n");
    let err = format!("{:#}", ClaimsFile::parse(&bad_kind).unwrap_err());
    assert!(err.contains("gian"), "{err}");
    let typo = format!("{SETTINGS}[[claim]]\nid = \"x\"\nwords = \"w\"\nsource = \"s\"\ntype = \"directional\"\npaper = 1.0\nquantity = {{ kind = \"gain\", dataset = \"digits\", tasks = [\"M-U\"], baselines = [\"mcd\"], harmonizer = \"gh\", agianst = \"gh\" }}\n");
    let err = format!("{:#}", ClaimsFile::parse(&typo).unwrap_err());
    assert!(err.contains("agianst"), "{err}");
    let value_without_tolerance = format!("{SETTINGS}[[claim]]\nid = \"x\"\nwords = \"w\"\nsource = \"s\"\ntype = \"value\"\npaper = 1.0\nquantity = {{ kind = \"conflict_rate\", dataset = \"digits\", tasks = [\"M-U\"], baseline = \"mcd\" }}\n");
    let err = format!("{:#}", ClaimsFile::parse(&value_without_tolerance).unwrap().claims().unwrap_err());
    assert!(err.contains("tolerance"), "{err}");
}

/// The claims file's numbers against the paper's tables (report/paper_results.toml).
#[test]
fn embedded_claims_agree_with_the_paper_tables() {
    let file = ClaimsFile::embedded().unwrap();
    let claims = file.claims().unwrap();
    let paper = PaperResults::embedded().unwrap();
    assert_eq!(file.gains.len(), 5, "one section 4.3 sentence per dataset");
    assert_eq!(claims.iter().filter(|c| c.id.contains('+')).count(), 50, "5 datasets x 5 baselines x GH, GH++");
    // The average column each sentence refers to, for a baseline and harmonizer.
    let average = |dataset: &str, column: &str, baseline: &str, harmonizer: &str| -> f64 {
        if let Some(t) = paper.table.iter().find(|t| t.dataset == dataset) {
            let col = if t.columns.iter().any(|c| c == column) { column } else { t.columns[0].as_str() };
            let i = t.columns.iter().position(|c| c == col).unwrap();
            return t.rows.iter().find(|r| r.baseline == baseline && r.harmonizer == harmonizer).unwrap().values[i];
        }
        let m = paper.matrix.iter().find(|m| m.dataset == dataset).unwrap();
        *m.rows.iter().find(|r| r.baseline == baseline && r.harmonizer == harmonizer).unwrap().values.last().unwrap().last().unwrap()
    };
    for g in &file.gains {
        for (baseline, [gh, ghpp]) in &g.paper {
            for (h, v) in [("gh", gh), ("gh++", ghpp)] {
                let table = average(&g.dataset, &g.average, baseline, h) - average(&g.dataset, &g.average, baseline, "none");
                assert!(close(table, *v, 0.051), "{} {baseline}+{h}: claims file {v}, table {table:.2}", g.dataset);
            }
        }
        assert_eq!(g.stated.len(), 5, "{}: the sentence names five baselines", g.dataset);
    }
    let baselines = ["cdan", "mcd", "dwl", "gvb", "ssrt", "ssrt*"];
    for dataset in ["office31", "officehome", "digits", "visda2017", "domainnet"] {
        let column = if dataset.starts_with("office") { "Avg‡" } else { "Avg" };
        let gain = |b: &str, h: &str, against: &str| average(dataset, column, b, h) - average(dataset, column, b, against);
        let ghpp_over_gh = baselines.iter().map(|b| gain(b, "gh++", "gh")).sum::<f64>() / baselines.len() as f64;
        let c = claims.iter().find(|c| c.id == format!("ghpp-over-gh/{dataset}")).unwrap();
        assert!(close(c.paper.unwrap(), ghpp_over_gh, 0.001), "{}: {} vs {ghpp_over_gh}", c.id, c.paper.unwrap());
        let group = |bs: [&str; 2]| bs.iter().flat_map(|b| ["gh", "gh++"].map(|h| gain(b, h, "none"))).sum::<f64>() / 4.0;
        let contrast = group(["cdan", "mcd"]) - group(["dwl", "gvb"]);
        let c = claims.iter().find(|c| c.id == format!("cdan-mcd-gain-more/{dataset}")).unwrap();
        assert!(close(c.paper.unwrap(), contrast, 0.001), "{}: {} vs {contrast}", c.id, c.paper.unwrap());
    }
    // Table III per task (CDAN at the paper's own schedule).
    for task in ["M-U", "U-M"] {
        for (h, slug) in [("gh", "gh"), ("gh++", "ghpp")] {
            let c = claims.iter().find(|c| c.id == format!("table3/cdan-{slug}/{task}")).unwrap();
            let table = paper.accuracy("digits", "cdan", h, task).unwrap() - paper.accuracy("digits", "cdan", "none", task).unwrap();
            assert!(close(c.paper.unwrap(), table, 1e-9), "{}: {} vs the table's {table}", c.id, c.paper.unwrap());
        }
    }
    // The rotation rule's arm is held to Table III's GH++ gain.
    let c = claims.iter().find(|c| c.id == "table3/cdan-ghpp-rotation/M-U").unwrap();
    let table = paper.accuracy("digits", "cdan", "gh++", "M-U").unwrap() - paper.accuracy("digits", "cdan", "none", "M-U").unwrap();
    assert!(close(c.paper.unwrap(), table, 1e-9), "{}: {} vs the table's {table}", c.id, c.paper.unwrap());
    for row in ["M-U", "U-M"] {
        let speed = &paper.speed[0].rows;
        let t = |h: &str| speed.iter().find(|r| r.task == row && r.harmonizer == h).unwrap();
        let c = claims.iter().find(|c| c.id == format!("table6/time-ratio/{row}")).unwrap();
        assert!(close(c.paper.unwrap(), t("gh").seconds_per_epoch / t("none").seconds_per_epoch, 1e-5), "{}", c.id);
        let c = claims.iter().find(|c| c.id == format!("table6/gain/{row}")).unwrap();
        assert!(close(c.paper.unwrap(), t("gh").accuracy - t("none").accuracy, 1e-9), "{}", c.id);
    }
}
