"""``canaryctl judge`` and ``judge calibrate`` end to end against the local fake server,
and the rule that the API key never appears in logs, output or error messages."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from canary_playground.scripted_judge import ScriptedJudge, sample_record
from click.testing import CliRunner

from controller.cli.judge_cmd import judge
from controller.judge import Judge, JudgeSettings, judge_samples
from controller.models import Sample, Unjudged
from controller.sources.samples_io import load_samples

KEY = "sk-test-VERYSECRET-0123456789abcdef"
RULE_HEAD = """\
apiVersion: canary.llmops.dev/v1alpha1
kind: CanaryRule
metadata: {name: demo}
spec:
  targetRef: {name: demo}
  canary: {image: demo:2}
  steps: [{weight: 10}]
  analysis:
    guards: [{name: success, metric: taskSuccess, tolerance: -0.02}]
  judge:
"""


@pytest.fixture
def srv(judge: ScriptedJudge) -> ScriptedJudge:
    return judge


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rule_file(tmp_path: Path, judge_yaml: str) -> Path:
    """A one-guard CanaryRule whose ``spec.judge`` is ``judge_yaml`` (indented 4)."""
    rule = tmp_path / "rule.yaml"
    rule.write_text(RULE_HEAD + judge_yaml.lstrip("\n") + "\n")
    return rule


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(judge, list(args), env=env, catch_exceptions=False)


class TestJudgeCommand:
    def test_writes_verdicts_readable_by_analyze(self, srv: ScriptedJudge, tmp_path: Path) -> None:
        records = [
            sample_record("a", "[[judge: fully]]"),
            sample_record("b", "[[judge: none]]", cohort="canary"),
            sample_record("c", "[[fake: malformed]]"),
        ]
        src, out = write_jsonl(tmp_path / "s.jsonl", records), tmp_path / "v.jsonl"
        result = invoke("--samples", str(src), "--out", str(out), "--judge-url", srv.base_url,
                        "--model", "gpt-4o-mini", "-o", "json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["judged"] == 2 and summary["unjudged"] == {"malformed": 1}
        assert summary["calls"] == 4 and summary["structured_output"] == "json_schema"
        lines = read_jsonl(out)
        assert [line["id"] for line in lines] == ["a", "b", "c"]
        assert lines[0]["judge"]["score"] == 1.0 and lines[1]["judge"]["score"] == 0.0
        assert "judge" not in lines[2] and lines[2]["unjudged_reason"] == "malformed"
        samples, report = load_samples(out)
        assert report.ok and samples[0].judge is not None and samples[2].judge is None

    def test_rerun_keeps_existing_verdicts_and_uses_cache(
        self, srv: ScriptedJudge, tmp_path: Path
    ) -> None:
        src = write_jsonl(tmp_path / "s.jsonl", [sample_record(f"x{i}", f"q{i}") for i in range(3)])
        cache, out1, out2 = tmp_path / "c.sqlite", tmp_path / "1.jsonl", tmp_path / "2.jsonl"
        common = ["--judge-url", srv.base_url, "--model", "m", "--cache", str(cache)]
        assert invoke("--samples", str(src), "--out", str(out1), *common).exit_code == 0
        assert invoke("--samples", str(out1), "--out", str(out2), *common).exit_code == 0
        assert srv.calls == 3  # second run: verdicts already present
        again = invoke("--samples", str(src), "--out", str(out2), *common, "--rejudge")
        assert again.exit_code == 0
        assert srv.calls == 3  # third run: all from the SQLite cache

    def test_rule_supplies_settings(self, srv: ScriptedJudge, tmp_path: Path) -> None:
        rule = rule_file(tmp_path, f"""
    model: gpt-4o-mini
    baseUrl: {srv.base_url}
    mode: thorough
    policy: Never share secrets.""")
        src = write_jsonl(tmp_path / "s.jsonl", [sample_record("a", "[[policy: violation]]")])
        out = tmp_path / "v.jsonl"
        result = invoke("--samples", str(src), "--out", str(out), "--rule", str(rule))
        assert result.exit_code == 0, result.output
        [line] = read_jsonl(out)
        assert line["judge"]["policy_violation"] is True and line["judge"]["mode"] == "thorough"
        assert srv.calls == 4

    def test_bad_input_exits_2(self, srv: ScriptedJudge, tmp_path: Path) -> None:
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"id": "x"}\nnot json\n')
        out = tmp_path / "v.jsonl"
        r = invoke(
            "--samples", str(bad), "--out", str(out), "--model", "m", "--judge-url", srv.base_url
        )
        assert r.exit_code == 2 and "bad.jsonl:1" in r.stderr and not out.exists()
        good = write_jsonl(tmp_path / "g.jsonl", [sample_record("a")])
        assert invoke("--samples", str(good), "--out", str(out)).exit_code == 2  # no model
        r = invoke("--samples", str(good), "--out", str(out), "--model", "m",
                   "--api-key-env", "NO_SUCH_VAR_FOR_TEST")
        assert r.exit_code == 2 and "NO_SUCH_VAR_FOR_TEST" in r.stderr
        assert srv.calls == 0

    def test_unreachable_endpoint_exits_1(self, tmp_path: Path) -> None:
        src = write_jsonl(tmp_path / "s.jsonl", [sample_record("a")])
        r = invoke("--samples", str(src), "--out", str(tmp_path / "v.jsonl"), "--model", "m",
                   "--judge-url", "http://127.0.0.1:9/v1")
        assert r.exit_code == 1 and "unusable" in r.stderr


class TestSecrets:
    def test_key_never_in_logs_output_or_messages_on_auth_error(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
    ) -> None:
        caplog.set_level(logging.DEBUG)
        with ScriptedJudge(api_key="the-right-key") as srv:  # echoes the wrong key in its 401
            src = write_jsonl(tmp_path / "s.jsonl", [sample_record(f"k{i}") for i in range(3)])
            r = invoke("--samples", str(src), "--out", str(tmp_path / "v.jsonl"), "--model", "m",
                       "--judge-url", srv.base_url, "--api-key-env", "JUDGE_KEY_FOR_TEST",
                       "--concurrency", "1", env={"JUDGE_KEY_FOR_TEST": KEY})
            assert r.exit_code == 1 and "auth" in r.stderr and "***" in r.stderr
            assert srv.calls == 1  # the bad key stops the judge after the first answer
            run = judge_samples(
                [Sample.model_validate(sample_record("k"))],
                JudgeSettings(model="m", base_url=srv.base_url),
                api_key=KEY,
            )
            [result] = run.results
            assert isinstance(result, Unjudged) and result.reason == "auth"
            assert run.fatal is not None
            texts = [r.output, r.stderr, caplog.text, *capfd.readouterr(), result.detail, run.fatal,
                     repr(run)]
        for text in texts:
            assert KEY not in text and "VERYSECRET" not in text

    def test_key_not_logged_on_success_at_debug_level(
        self, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
    ) -> None:
        caplog.set_level(logging.DEBUG)
        with ScriptedJudge(api_key=KEY) as srv:

            async def go() -> None:
                async with Judge(JudgeSettings(model="m", base_url=srv.base_url), api_key=KEY) as j:
                    await j.judge(Sample.model_validate(sample_record("ok")))

            asyncio.run(go())
            assert srv.stats.statuses == [200]
        assert caplog.records  # debug logging really was on
        assert KEY not in caplog.text and KEY not in "".join(capfd.readouterr())


class TestCalibrate:
    def labeled(self, tmp_path: Path) -> Path:
        # judge: success, success, failure, failure, success, unjudged
        marks = ["[[judge: fully]]", "[[judge: mostly]]", "[[judge: none]]", "[[judge: minor]]",
                 "[[judge: fully,fully]]", "[[fake: malformed]]"]
        human = [True, False, False, True, True, True]
        return write_jsonl(
            tmp_path / "labeled.jsonl",
            [
                sample_record(f"l{i}", m, human_success=h, human_score=1.0 if h else 0.0)
                for i, (m, h) in enumerate(zip(marks, human, strict=True))
            ],
        )

    def test_calibrate_json(self, srv: ScriptedJudge, tmp_path: Path) -> None:
        r = invoke("calibrate", "--labeled", str(self.labeled(tmp_path)), "--model", "m",
                   "--judge-url", srv.base_url, "--min-kappa", "0.5", "-o", "json",
                   "--out", str(tmp_path / "judged.jsonl"))
        assert r.exit_code == 0, r.output
        cal = json.loads(r.stdout)
        assert cal["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
        assert cal["unjudged"] == 1 and cal["unjudged_rate"] == pytest.approx(1 / 6)
        assert cal["agreement"] == pytest.approx(0.6)
        assert cal["kappa"] == pytest.approx(1 / 6)  # po 0.6, pe 0.52
        assert cal["f1"] == pytest.approx(2 / 3)
        assert cal["trusted"] is False and "below" in cal["trusted_reason"]

        # the judged file carries verdicts: recalibrating needs no endpoint and no model
        before = srv.calls
        r2 = invoke("calibrate", "--labeled", str(tmp_path / "judged.jsonl"), "-o", "json")
        assert r2.exit_code == 0, r2.output
        assert json.loads(r2.stdout)["confusion"] == cal["confusion"]
        assert srv.calls == before

    def test_calibrate_table_and_bad_labels(self, srv: ScriptedJudge, tmp_path: Path) -> None:
        r = invoke("calibrate", "--labeled", str(self.labeled(tmp_path)), "--model", "m",
                   "--judge-url", srv.base_url)
        assert r.exit_code == 0 and "Cohen's kappa" in r.stdout and "judge success" in r.stdout
        bad = write_jsonl(tmp_path / "bad.jsonl", [sample_record("z", human_success="yes")])
        r = invoke("calibrate", "--labeled", str(bad), "--model", "m", "--judge-url", srv.base_url)
        assert r.exit_code == 2 and "human_success" in r.stderr

    def test_calibrate_uses_the_rules_per_task_thresholds(self, tmp_path: Path) -> None:
        """Scores of 0.6 on open-ended tasks are successes at that task's threshold 0.5
        (judge.thresholds), failures at the rule-wide 0.7: calibration agrees with the
        humans only when it applies the same thresholds the guards use."""
        records = [sample_record(f"o{i}", task="open-ended", human_success=True,
                                 judge={"score": 0.6, "model": "m"}) for i in range(4)]
        records += [sample_record(f"q{i}", task="question", human_success=False,
                                  judge={"score": 0.6, "model": "m"}) for i in range(4)]
        labeled = write_jsonl(tmp_path / "labeled.jsonl", records)
        rule = tmp_path / "rule.yaml"
        rule.write_text(json.dumps({
            "apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule",
            "metadata": {"name": "demo"},
            "spec": {"targetRef": {"name": "demo"}, "canary": {"image": "demo:2"},
                     "steps": [{"weight": 50}],
                     "analysis": {"guards": [{"name": "s", "metric": "taskSuccess",
                                              "tolerance": -0.05}]},
                     "judge": {"model": "m", "thresholds": [
                         {"task": "open-ended", "threshold": 0.5}]}}}))
        per_task = invoke("calibrate", "--labeled", str(labeled), "--rule", str(rule),
                          "-o", "json")
        assert per_task.exit_code == 0, per_task.output
        assert json.loads(per_task.stdout)["agreement"] == 1.0
        flat = invoke("calibrate", "--labeled", str(labeled), "--rule", str(rule),
                      "--threshold", "0.7", "-o", "json")
        assert json.loads(flat.stdout)["agreement"] == 0.5

class TestHonestCost:
    def test_self_hosted_reports_tokens_and_no_cost(
        self, srv: ScriptedJudge, tmp_path: Path
    ) -> None:
        record = sample_record("a", "[[judge: mostly,mostly,minor]]")
        src = write_jsonl(tmp_path / "s.jsonl", [record])
        common = ["--samples", str(src), "--out", str(tmp_path / "v.jsonl"), "--judge-url",
                  srv.base_url, "--model", "gpt-4o-mini", "--mode", "thorough"]
        r = invoke(*common, "-o", "json")
        assert r.exit_code == 0, r.output
        summary = json.loads(r.stdout)
        assert summary["cost_usd"] is None and summary["prompt_tokens"] > 0
        assert summary["aggregation"] == "evalLib" and summary["temperature"] == 0.5
        assert summary["successes"] == 1  # 0.7 at the reference metric's default
        [line] = read_jsonl(tmp_path / "v.jsonl")
        assert line["judge"]["score"] == 0.7 and "cost_usd" not in line["judge"]["usage"]
        table = invoke(*common, "--rejudge")
        assert "unknown: no price" in table.stdout
        priced = json.loads(invoke(*common, "--rejudge", "--price", "1,2", "-o", "json").stdout)
        assert priced["cost_usd"] == pytest.approx(
            (priced["prompt_tokens"] * 1 + priced["completion_tokens"] * 2) / 1e6
        )
        soft = json.loads(invoke(*common, "--rejudge", "--aggregation", "softMin",
                                 "--temperature", "0.5", "-o", "json").stdout)
        assert soft["successes"] == 0  # 0.614 under the soft minimum

    def test_cost_budget_without_price_is_refused(self, srv: ScriptedJudge, tmp_path: Path) -> None:
        rule = rule_file(tmp_path, f"""
    model: qwen2.5-7b
    baseUrl: {srv.base_url}
    budget: {{maxCostUsdPerInterval: 0.5}}""")
        src = write_jsonl(tmp_path / "s.jsonl", [sample_record("a")])
        r = invoke("--samples", str(src), "--out", str(tmp_path / "v.jsonl"), "--rule", str(rule))
        assert r.exit_code == 2 and "maxCostUsdPerInterval" in r.stderr and "price" in r.stderr
        assert srv.calls == 0
