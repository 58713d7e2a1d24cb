//! `pre-deploy report --html FILE` against a real PostgreSQL: the page is self-contained (no
//! remote fetch, no script), names every backup with its kind, level, pin and deployed commit,
//! shows what retention would remove next without removing it, and renders in headless
//! Chromium to a page with its charts and table rows (the screenshot is not blank).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use predeploy_tests::cli::git;
use predeploy_tests::{Output, PgServer, pre_deploy, run};

/// Where `scripts/setup.sh` installs Chromium (Debian's `chromium`).
const CHROMIUM: &str = "/usr/bin/chromium";

fn tool(dir: &Path) -> Command {
    let mut cmd = pre_deploy();
    cmd.current_dir(dir);
    cmd
}

/// A release checkout: a git repository with one commit, whose SHA is returned.
fn release(dir: &Path) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("app.txt"), "release 1\n").expect("file");
    std::fs::write(dir.join(".gitignore"), "store/\n").expect("gitignore");
    git(dir, &["add", "app.txt", ".gitignore"]);
    predeploy_tests::cli::git_commit(dir, &[], "release 1")
}

fn backup_id(out: &Output) -> String {
    out.assert_success();
    let v = out.json();
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no backup id in {v:#}"))
        .to_owned()
}

/// Runs headless Chromium on `args` (plus the page); fails naming the setup script when it is
/// not installed.
fn chromium(profile: &Path, args: &[&str], page: &Path) -> Output {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium)"
    );
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(format!("file://{}", page.display()))
    .env("HOME", profile);
    run(&mut cmd)
}

/// The pixels of a PNG as RGB triples, with its width and height.
fn decode_png(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "8-bit screenshot");
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| match channels {
            1 | 2 => [p[0], p[0], p[0]],
            _ => [p[0], p[1], p[2]],
        })
        .collect();
    (info.width, info.height, pixels)
}

fn close_to(p: [u8; 3], rgb: [u8; 3]) -> bool {
    p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 12)
}

#[test]
fn the_html_report_is_self_contained_shows_every_backup_and_renders_in_chromium() {
    let server = PgServer::shared();
    let db = server.create_database("report");
    server.psql(
        &db,
        "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 5000) g",
    );
    let dir = tempfile::tempdir().expect("dir");
    let dir = dir.path();
    let sha = release(dir);
    let config = dir.join("predeploy.toml");
    let base_config = format!(
        "store = \"store\"\nenvironment = \"production\"\n[sources]\ndb = \"{}\"\n",
        server.url(&db)
    );
    std::fs::write(&config, &base_config).expect("config");

    // Three manual backups (the first pinned, the second verified only to level 3), then a
    // deploy through `run`, which records the commit it deployed.
    let pinned = backup_id(&run(tool(dir).args(["--json", "backup"])));
    run(tool(dir).args(["pin", &pinned, "--note", "before <the> migration"])).assert_success();
    server.psql(
        &db,
        "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(5001, 20000) g",
    );
    let archive = backup_id(&run(tool(dir).args([
        "--json",
        "backup",
        "--verify-level",
        "archive",
    ])));
    let newest_manual = backup_id(&run(tool(dir).args(["--json", "backup"])));
    run(tool(dir).args(["run", "--", "true"])).assert_success();
    let list = run(tool(dir).args(["--json", "list"]));
    list.assert_success();
    let deployed = list.json()["backups"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["kind"] == "pre-deploy"))
        .and_then(|b| b["id"].as_str())
        .expect("the backup of the deploy")
        .to_owned();

    // Rules added afterwards (so no backup ran them yet): keep the newest manual backup. The
    // pinned one is protected, so the level-3 one is what retention would remove next.
    std::fs::write(
        &config,
        format!("{base_config}[retention.manual]\nkeep-last = 1\n"),
    )
    .expect("config");

    let html = dir.join("reports/platform.html");
    std::fs::create_dir(dir.join("reports")).expect("reports dir");
    let out = run(tool(dir).args(["report", "--html"]).arg(&html));
    out.assert_success();
    assert!(
        out.stdout.contains("1 project/environment(s), 4 backup(s)"),
        "{}",
        out.stdout
    );
    let page = std::fs::read_to_string(&html).expect("the report was written");

    // Self-contained: nothing to fetch, nothing to run.
    for remote in [
        "http://", "https://", "//cdn", "<script", "<link", "<img", "@import", "url(",
    ] {
        assert!(!page.contains(remote), "the page has {remote:?}");
    }
    // Every backup with its kind and level, the pin with its (escaped) note, the deployment.
    for id in [&pinned, &archive, &newest_manual, &deployed] {
        assert!(
            page.contains(&format!("id=\"backup-{id}\"")),
            "{id} in the timeline"
        );
    }
    for text in [
        ">manual<",
        ">pre-deploy<",
        "level 3 (archive)",
        "level 4 (restore)",
        ">pinned<",
        "before &lt;the&gt; migration",
        ">deployed<",
        &sha,
        "production",
    ] {
        assert!(page.contains(text), "the page lacks {text:?}");
    }
    assert!(
        !page.contains("before <the> migration"),
        "store values are escaped"
    );
    // The last verification of the source, and the dry-run retention plan naming the level-3
    // backup; which is still there afterwards.
    assert!(
        page.contains("<tr class=\"source\"><td>db</td>"),
        "source row"
    );
    let removal = page
        .split("<tr class=\"removal\">")
        .nth(1)
        .expect("a planned removal");
    assert!(removal.contains(&archive), "{removal}");
    assert_eq!(page.matches("<tr class=\"removal\">").count(), 1);
    let list = run(tool(dir).args(["--json", "list"]));
    list.assert_success();
    assert!(list.stdout.contains(&archive), "report removes nothing");

    // --json: the same data for machines.
    let json = run(tool(dir).args(["--json", "report", "--html"]).arg(&html));
    json.assert_success();
    let v = json.json();
    assert_eq!(v["command"], "report");
    assert_eq!(v["results"][0]["environment"], "production");
    assert_eq!(v["results"][0]["backups"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        v["results"][0]["retention"]["removals"][0]["id"],
        archive.as_str()
    );

    // Chromium renders it: the charts and every row are in the DOM.
    let profile = tempfile::tempdir().expect("profile");
    let dom = chromium(profile.path(), &["--dump-dom"], &html);
    dom.assert_success();
    assert_eq!(
        dom.stdout.matches("<svg class=\"chart\"").count(),
        2,
        "two charts"
    );
    assert_eq!(
        dom.stdout.matches("<circle ").count(),
        8,
        "a dot per backup per chart"
    );
    assert_eq!(dom.stdout.matches("<tr class=\"backup\"").count(), 4);

    // The screenshot is a page, not a blank: many colours, the dots of both kinds, the badge
    // of a level-4 verification.
    let png = dir.join("report.png");
    chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
        ],
        &html,
    )
    .assert_success();
    let (width, height, pixels) = decode_png(&png);
    assert_eq!((width, height), (1280, 2000));
    let colours: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(colours.len() > 50, "{} colours", colours.len());
    let count = |rgb: [u8; 3]| pixels.iter().filter(|p| close_to(**p, rgb)).count();
    assert!(count([0x25, 0x63, 0xeb]) > 20, "pre-deploy dots (blue)");
    assert!(count([0xd9, 0x77, 0x06]) > 20, "manual dots (orange)");
    assert!(count([0xdc, 0xfc, 0xe7]) > 100, "level-4 badges (green)");
    let non_white = pixels.iter().filter(|p| p.iter().any(|c| *c < 240)).count();
    assert!(
        non_white > pixels.len() / 50,
        "{non_white} non-white pixels"
    );
    if let Some(keep) = std::env::var_os("PREDEPLOY_REPORT_SCREENSHOT") {
        // `docs/report.png` comes from here (PREDEPLOY_REPORT_SCREENSHOT=$PWD/docs/report.png):
        // the same page in a window of its height.
        let docs = PathBuf::from(keep);
        chromium(
            profile.path(),
            &[
                &format!("--screenshot={}", docs.display()),
                "--window-size=1280,1150",
            ],
            &html,
        )
        .assert_success();
    }
}

#[test]
fn a_project_that_cannot_be_read_gets_a_section_saying_why_and_the_others_are_reported() {
    let server = PgServer::shared();
    let db = server.create_database("reportok");
    server.psql(
        &db,
        "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g",
    );
    let dir = tempfile::tempdir().expect("dir");
    let dir = dir.path();
    std::fs::write(
        dir.join("predeploy.toml"),
        format!(
            "store = \"store\"\n[project.shop.sources]\ndb = \"{}\"\n\
             [project.blog]\nstore = \"never-written\"\n[project.blog.sources]\ndb = \"{}\"\n",
            server.url(&db),
            server.url(&db)
        ),
    )
    .expect("config");
    run(tool(dir).args(["--project", "shop", "backup"])).assert_success();
    let html = dir.join("report.html");
    // blog has no backup yet, so no store: exit 5, as `status` says; shop is reported anyway.
    let out = run(tool(dir).args(["report", "--html"]).arg(&html));
    out.assert_code(5);
    assert!(
        out.stdout.contains("FAILED  blog/default  exit 5"),
        "{}",
        out.stdout
    );
    let page = std::fs::read_to_string(&html).expect("written anyway");
    assert!(page.contains("id=\"target-shop-default\""));
    assert!(page.contains("id=\"target-blog-default\""));
    assert_eq!(
        page.matches("<tr class=\"backup\"").count(),
        1,
        "shop's backup"
    );
    assert!(page.contains("Cannot read this project/environment (exit 5)"));
    // --project narrows it, as for `status`.
    run(tool(dir)
        .args(["--project", "shop", "report", "--html"])
        .arg(&html))
    .assert_success();
    let page = std::fs::read_to_string(&html).expect("replaced");
    assert!(!page.contains("target-blog-default"));
}
