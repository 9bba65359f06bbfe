"""A quiz benchmark with samples (several questions per task) and a quiz agent, for sample, transcript and epoch tests.

The agent's behaviour comes from environment variables, read per request:
``QUIZ_WRONG`` (comma-separated question ids answered wrong), ``QUIZ_P`` (probability of a right
answer, drawn per request), ``QUIZ_LOG`` (a file each request is appended to).
"""

QUIZ = """
import json, os, random
from pathlib import Path
from pytest_benchflow import BaseAgent, BaseBench, BenchArgs, BenchClient, SampleResult

TASKS = int(os.environ.get("QUIZ_TASKS", "4"))
PER_TASK = int(os.environ.get("QUIZ_PER_TASK", "5"))
QUESTIONS = {f"t{t}": [f"t{t}q{i}" for i in range(PER_TASK)] for t in range(TASKS)}


def gold(question):
    # Never sent: the bench keeps it; the agent "knows" the rule.
    return "gold-" + question[::-1]


class QuizClient(BenchClient):
    def prepare_input(self, raw):
        body = {"question": raw}
        if os.environ.get("QUIZ_SEND_TOKEN"):
            body["auth"] = os.environ["QUIZ_SEND_TOKEN"]  # a bench that forwards a credential
        return body

    def parse_response(self, raw):
        return {"answer": raw.strip()}


def evaluate(env):
    client = QuizClient(env["INTELLIGENCE_URL"])
    questions = QUESTIONS[env["TEST_START_ID"]]
    answers = client.get_responses(questions, sample_ids=questions, max_concurrency=2)
    Path(env["BENCHFLOW_RESULTS_DIR"], "answers.json").write_text(
        json.dumps({q: a["answer"] for q, a in zip(questions, answers)})
    )


class QuizBench(BaseBench):
    def get_args(self, task_id):
        return BenchArgs({"optional": [{"QUIZ_API_KEY": None}]})

    def get_all_tasks(self, split):
        return {"task_ids": list(QUESTIONS), "error_message": None}

    def get_entrypoint(self):
        return evaluate

    def get_result(self, task_id):
        answers = json.loads(Path(self.results_dir, "answers.json").read_text())
        samples = [SampleResult(sample_id=q, score=answers[q] == gold(q), metadata={"answer": answers[q]})
                   for q in QUESTIONS[task_id]]
        score = sum(s.score for s in samples) / len(samples)
        return {"is_resolved": score >= 0.5, "metrics": {"score": score}, "samples": samples}


class QuizAgent(BaseAgent):
    def call_api(self, inputs):
        question = inputs["question"]
        log = os.environ.get("QUIZ_LOG")
        if log:
            with open(log, "a") as f:
                f.write(question + "\\n")
        wrong = set(filter(None, os.environ.get("QUIZ_WRONG", "").split(",")))
        p = float(os.environ.get("QUIZ_P", "1"))
        if question in wrong or random.random() >= p:
            return "wrong"
        return gold(question)
"""

QUIZ_ARGS = ["--benchflow=quiz_bench.py:QuizBench", "--agent=quiz_bench:QuizAgent", "-p", "no:randomly"]
QUIZ_ENV = ("QUIZ_TASKS", "QUIZ_PER_TASK", "QUIZ_WRONG", "QUIZ_P", "QUIZ_LOG", "QUIZ_SEND_TOKEN", "QUIZ_API_KEY")
