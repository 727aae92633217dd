use super::*;
use crate::config::model::{
    DeployStrategy, GracefulStop, Lifecycle, Policy, PortRange, ProcessConfig,
    ProcessLogFileConfig, ProcessLogFormat, RestartPolicy,
};

fn ctx() -> TemplateContext {
    TemplateContext {
        application: "shop".to_string(),
        release_id: "20240101T000000".to_string(),
        release_path: "/srv/shop/releases/42".to_string(),
        revision: "abc123".to_string(),
        process_id: "web".to_string(),
        replica_index: 2,
        replica_count: 4,
        port: Some(18001),
        ports: vec![
            ("web".to_string(), 18001),
            ("background-jobs-main".to_string(), 18600),
            ("a.b".to_string(), 18700),
        ],
        proxy_host: "0.0.0.0".to_string(),
        proxy_port: 0,
        proxy_upstream_host: "127.0.0.1".to_string(),
        env: HashMap::from([("HOME".to_string(), "/home/shop".to_string())]),
    }
}

fn missing(placeholder: &str) -> TemplateError {
    TemplateError::Missing {
        placeholder: placeholder.to_string(),
    }
}

#[test]
fn every_variable_renders() {
    let ctx = ctx();
    let cases = [
        ("{{application}}", "shop"),
        ("{{releaseId}}", "20240101T000000"),
        ("{{releasePath}}", "/srv/shop/releases/42"),
        ("{{revision}}", "abc123"),
        ("{{processId}}", "web"),
        ("{{replicaIndex}}", "2"),
        ("{{replicaCount}}", "4"),
        ("{{port}}", "18001"),
        ("{{ports.web}}", "18001"),
        ("{{ports.background-jobs-main}}", "18600"),
        ("{{ports.a.b}}", "18700"),
        ("{{proxy.host}}", "0.0.0.0"),
        ("{{proxy.port}}", "0"),
        ("{{proxy.upstreamHost}}", "127.0.0.1"),
        ("{{env.HOME}}", "/home/shop"),
    ];
    for (template, expected) in cases {
        assert_eq!(render(template, &ctx).unwrap(), expected, "{template}");
    }
}

#[test]
fn whitespace_inside_braces_is_allowed_and_text_is_kept() {
    let ctx = ctx();
    assert_eq!(
        render(
            "python3 {{ releasePath }}/app.py --port={{\tport\n}} &",
            &ctx
        )
        .unwrap(),
        "python3 /srv/shop/releases/42/app.py --port=18001 &"
    );
    assert_eq!(render("no placeholders", &ctx).unwrap(), "no placeholders");
    assert_eq!(render("", &ctx).unwrap(), "");
}

#[test]
fn text_that_is_not_a_placeholder_stays_as_written() {
    let ctx = ctx();
    for text in [
        "{{a b}}", "{{}}", "{{ }}", "{{port", "{port}", "}}", "{{port}", "{{$x}}",
    ] {
        assert_eq!(render(text, &ctx).unwrap(), text, "{text}");
    }
    // A placeholder can start one brace later.
    assert_eq!(render("{{{port}}}", &ctx).unwrap(), "{18001}");
    assert_eq!(render("é{{port}}ü", &ctx).unwrap(), "é18001ü");
}

#[test]
fn revision_falls_back_to_the_release_id() {
    let mut ctx = ctx();
    ctx.revision.clear();
    assert_eq!(render("{{revision}}", &ctx).unwrap(), "20240101T000000");
}

#[test]
fn missing_values_quote_the_placeholder_as_written() {
    let mut ctx = ctx();
    assert_eq!(
        render("x {{ env.ROLLBRIDGE_ENV_MISSING }} y", &ctx),
        Err(missing("{{ env.ROLLBRIDGE_ENV_MISSING }}"))
    );
    assert_eq!(
        render("{{ports.nope}}", &ctx),
        Err(missing("{{ports.nope}}"))
    );
    assert_eq!(render("{{unknown}}", &ctx), Err(missing("{{unknown}}")));
    assert_eq!(
        render("{{proxy.nope}}", &ctx),
        Err(missing("{{proxy.nope}}"))
    );
    assert_eq!(
        render("{{application.length}}", &ctx),
        Err(missing("{{application.length}}"))
    );
    assert_eq!(render("{{port.x}}", &ctx), Err(missing("{{port.x}}")));
    ctx.port = None;
    assert_eq!(render("--port {{port}}", &ctx), Err(missing("{{port}}")));
    assert_eq!(
        missing("{{port}}").to_string(),
        "Missing template value for {{port}}"
    );
}

#[test]
fn groups_are_errors_that_list_the_choices() {
    let mut ctx = ctx();
    let error = render("{{ports}}", &ctx).unwrap_err();
    assert!(matches!(error, TemplateError::NotAValue { .. }));
    let text = error.to_string();
    assert!(text.contains("{{ports}}"), "{text}");
    assert!(text.contains("{{ports.web}}"), "{text}");
    assert!(text.contains("{{ports.background-jobs-main}}"), "{text}");

    let text = render("{{proxy}}", &ctx).unwrap_err().to_string();
    assert!(text.contains("{{proxy.upstreamHost}}"), "{text}");
    let text = render("{{ env }}", &ctx).unwrap_err().to_string();
    assert!(
        text.contains("{{ env }}") && text.contains("{{env.<NAME>}}"),
        "{text}"
    );

    ctx.ports.clear();
    let text = render("{{ports}}", &ctx).unwrap_err().to_string();
    assert!(
        text.contains("no process in this release has a port"),
        "{text}"
    );
}

#[test]
fn env_ids_collapse_runs_of_other_characters() {
    assert_eq!(env_id("background-jobs-main"), "BACKGROUND_JOBS_MAIN");
    assert_eq!(env_id("a--b"), "A_B");
    assert_eq!(env_id("web"), "WEB");
    assert_eq!(env_id("-x.y_z-"), "_X_Y_Z_");
    assert_eq!(env_id("caché"), "CACH_");
}

#[test]
fn injected_env_has_every_variable_in_order() {
    let ctx = ctx();
    let env = injected_env(&ctx);
    let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ROLLBRIDGE_APPLICATION",
            "ROLLBRIDGE_PROCESS_ID",
            "ROLLBRIDGE_RELEASE_ID",
            "ROLLBRIDGE_RELEASE_PATH",
            "ROLLBRIDGE_REPLICA_COUNT",
            "ROLLBRIDGE_REPLICA_INDEX",
            "ROLLBRIDGE_REVISION",
            "ROLLBRIDGE_PORT",
            "ROLLBRIDGE_WEB_PORT",
            "ROLLBRIDGE_BACKGROUND_JOBS_MAIN_PORT",
            "ROLLBRIDGE_A_B_PORT",
        ]
    );
    let value = |name: &str| env.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(value("ROLLBRIDGE_REPLICA_COUNT"), "4");
    assert_eq!(value("ROLLBRIDGE_REPLICA_INDEX"), "2");
    assert_eq!(value("ROLLBRIDGE_PORT"), "18001");
    assert_eq!(value("ROLLBRIDGE_BACKGROUND_JOBS_MAIN_PORT"), "18600");
}

#[test]
fn port_variable_only_when_the_process_has_a_port() {
    let mut ctx = ctx();
    ctx.port = None;
    ctx.revision.clear();
    let env = injected_env(&ctx);
    assert!(env.iter().all(|(name, _)| name != "ROLLBRIDGE_PORT"));
    assert!(env.contains(&(
        "ROLLBRIDGE_REVISION".to_string(),
        "20240101T000000".to_string()
    )));
}

fn process() -> ProcessConfig {
    ProcessConfig {
        id: "web".to_string(),
        command: "python3 {{releasePath}}/app.py --port {{port}}".to_string(),
        policy: Policy::Proxied,
        deploy_strategy: DeployStrategy::Persistent,
        cwd: Some("{{releasePath}}/web".to_string()),
        env: vec![
            (
                "JOBS_URL".to_string(),
                "http://127.0.0.1:{{ports.background-jobs-main}}".to_string(),
            ),
            (
                "ROLLBRIDGE_APPLICATION".to_string(),
                "overridden".to_string(),
            ),
        ],
        port: Some(PortRange {
            from: 18000,
            to: 18099,
        }),
        health: None,
        stop_signal: "SIGTERM".to_string(),
        graceful_stop: GracefulStop::Millis(10_000),
        lifecycle: Lifecycle::default(),
        non_blocking_drain: false,
        restart_delay_ms: 1000,
        restart: RestartPolicy::default(),
        memory: None,
        replicas: 1,
        output_lines: 50,
        log_file: None,
    }
}

#[test]
fn render_process_renders_command_cwd_and_env_with_later_values_winning() {
    let rendered = render_process(&process(), &ctx()).unwrap();
    assert_eq!(
        rendered.command,
        "python3 /srv/shop/releases/42/app.py --port 18001"
    );
    assert_eq!(rendered.cwd.as_deref(), Some("/srv/shop/releases/42/web"));
    let last = rendered.env.last().unwrap();
    assert_eq!(
        last,
        &(
            "ROLLBRIDGE_APPLICATION".to_string(),
            "overridden".to_string()
        )
    );
    assert_eq!(
        rendered
            .env
            .iter()
            .filter(|(name, _)| name == "ROLLBRIDGE_APPLICATION")
            .count(),
        1
    );
    assert!(
        rendered
            .env
            .contains(&("JOBS_URL".to_string(), "http://127.0.0.1:18600".to_string()))
    );
}

#[test]
fn render_process_fails_on_the_first_missing_value() {
    let mut process = process();
    process.cwd = None;
    process.env = vec![("X".to_string(), "{{env.NOT_SET_ANYWHERE}}".to_string())];
    assert_eq!(
        render_process(&process, &ctx()),
        Err(missing("{{env.NOT_SET_ANYWHERE}}"))
    );
    process.command = "{{ports}}".to_string();
    assert!(matches!(
        render_process(&process, &ctx()),
        Err(TemplateError::NotAValue { .. })
    ));
    let mut no_cwd = self::process();
    no_cwd.cwd = None;
    assert_eq!(render_process(&no_cwd, &ctx()).unwrap().cwd, None);
}

#[test]
fn the_log_file_path_is_rendered_like_the_command() {
    let mut process = process();
    assert_eq!(render_process(&process, &ctx()).unwrap().log_file, None);
    let settings = |path: &str| ProcessLogFileConfig {
        path: path.to_string(),
        base_dir: "/etc/shop".into(),
        format: ProcessLogFormat::Raw,
        rotation: None,
        keep: None,
    };
    process.log_file = Some(settings(
        "logs/{{processId}}-{{replicaIndex}}-{{ port }}.log",
    ));
    assert_eq!(
        render_process(&process, &ctx())
            .unwrap()
            .log_file
            .as_deref(),
        Some("logs/web-2-18001.log")
    );
    process.log_file = Some(settings("{{env.NOT_SET_ANYWHERE}}/x.log"));
    assert_eq!(
        render_process(&process, &ctx()),
        Err(missing("{{env.NOT_SET_ANYWHERE}}"))
    );
}
