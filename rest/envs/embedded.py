"""`embedded_multiturn`: an offline multi-turn task whose answers need the tools' results.

Four kinds, each needing a tool's result (the temperatures, ids and homes are the episode's random state):
- compute-then-answer: "What is 3 plus 4?" -> add (or multiply) -> answer the result;
- look-up-then-answer: 'What's the temperature in "Paris" right now?' -> get_temperature -> answer;
- look-up-then-act: 'Send the word "hello" to "Sam".' -> lookup_contact -> send_message(the user_id it returned);
- two dependent calls: 'What's the temperature where "Sam" lives?' -> lookup_contact -> get_temperature(the
  city it returned) -> answer.
Every argument and answer is one token (see CITIES): learnable by the 2-layer demo model, which cannot copy
multi-digit numbers or multi-token strings (`tiny-qwen3-agentsft` is its warm start on this task).
Prompts are in the single-turn embedded task's style (`rest.data.embedded_task`: compact ToolRL system prompt,
the request as a dialogue record), so `tiny-qwen3-toolsft` starts from the format it knows.

Reward parts: `success` (the answer names the expected value, or the message went to the right id with the
right text, and the episode ended with a reply), `calls` (share of gold calls made, as a multiset),
`format` (the last turn is a `<response>` reply with no failed call in the episode);
reward = 0.6 success + 0.3 calls + 0.1 format, in [0, 1].
"""

from __future__ import annotations

import json
import random
import re

from rest.data.embedded_task import SYSTEM_HEAD
from rest.data.prompts import HISTORY_HEAD, render_toolrl_tool_list
from rest.envs.base import EnvTask, Trajectory, gold_calls, register_env, render_reply
from rest.envs.tools import ToolEnv, function_tool

SYSTEM_TAIL = (
    "\n\n**Output Format**\n<think> Your thoughts </think>\n<tool_call>\n"
    '{"name": "Tool name", "parameters": {"Parameter name": "value"}}\n</tool_call>\n'
    "<response> Your reply </response>\nCall a tool, read its result in <tool_response>, then reply."
)
# Every value a call argument or an answer takes is ONE Qwen3 token, the same token in the request (quoted, as
# in JSON), in the call and in the observation (digits are single tokens): the 2-layer demo model can copy
# single tokens, not multi-token strings or multi-digit numbers (Qwen3 splits digits).
CITIES = ["Paris", "Berlin", "London", "Denver", "Chicago", "Toronto", "Phoenix", "Seattle", "Atlanta"]
NAMES = ["Sam", "Ana", "Leo", "Tom", "Max", "Ben", "Dan", "Bob", "Tim", "Kate"]
WORDS = ["hello", "thanks", "yes", "no", "bye", "ok", "later", "soon", "welcome"]
_SMALL_SUMS = [(a, b) for a in range(1, 9) for b in range(1, 10 - a)]  # one-digit operands and result
_SMALL_PRODUCTS = [(a, b) for a in range(2, 5) for b in range(2, 5) if a * b <= 9]
KINDS = ("compute", "lookup_answer", "lookup_act", "chain")
_RESPONSE = re.compile(r"<response>(.*?)</response>", re.DOTALL)


@register_env("embedded_multiturn")
class EmbeddedMultiTurnEnv(ToolEnv):
    def load_state(self, state: dict) -> None:
        self.temperatures = dict(state.get("temperatures", {}))
        self.contacts = dict(state.get("contacts", {}))
        self.outbox: list[dict] = []

    @function_tool
    def add(self, a: int, b: int) -> dict:
        """Add two integers.

        Args:
            a: The first number.
            b: The second number.
        """
        return {"result": a + b}

    @function_tool
    def multiply(self, a: int, b: int) -> dict:
        """Multiply two integers.

        Args:
            a: The first number.
            b: The second number.
        """
        return {"result": a * b}

    @function_tool
    def get_temperature(self, city: str) -> dict:
        """Get the current temperature of a city in degrees Celsius.

        Args:
            city: The city name.
        """
        if city not in self.temperatures:
            raise ValueError(f"no weather station in {city!r}")
        return {"city": city, "celsius": self.temperatures[city]}

    @function_tool
    def lookup_contact(self, contact: str) -> dict:
        """Find a contact's user id and home city by name.

        Args:
            contact: The contact's name.
        """
        # the argument is not called `name`: after `"name": "` the call format puts the tool's name, and the demo
        # model, copying by the key before the value, then wrote a tool-like name instead of the contact's
        if contact not in self.contacts:
            raise ValueError(f"no contact named {contact!r}")
        return {"name": contact, **self.contacts[contact]}

    @function_tool
    def send_message(self, user_id: int, text: str) -> dict:
        """Send a text message to a user id.

        Args:
            user_id: The receiver's user id (from lookup_contact).
            text: The message.
        """
        if user_id not in {c["user_id"] for c in self.contacts.values()}:
            raise ValueError(f"unknown user id {user_id!r}")
        self.outbox.append({"user_id": user_id, "text": text})
        return {"status": "sent", "user_id": user_id}

    def reset(self, task: EnvTask):
        self.task = task
        self.load_state(task.state)
        tools = self.schemas(task.info.get("tools"))
        messages = [dict(m) for m in task.messages]
        if self.prompt_format == "toolrl":
            request = messages[-1]["content"]
            # parameter types only, as the single-turn embedded task lists them
            listed = [{**t, "parameters": {"type": "object", "properties": {
                k: {"type": v["type"]} for k, v in t["parameters"]["properties"].items()}}} for t in tools]
            messages = [{"role": "system", "content": SYSTEM_HEAD + render_toolrl_tool_list(listed) + SYSTEM_TAIL},
                        {"role": "user", "content": f"{HISTORY_HEAD}\n<user> {request} </user>"}]
        return messages, tools

    def score(self, trajectory: Trajectory) -> dict[str, float]:
        info = trajectory.task.info
        reply = final_reply(trajectory.final_text, self.prompt_format)
        if trajectory.task.info["kind"] == "lookup_act":
            success = reply is not None and self.outbox == info["outbox"]
        else:
            success = reply is not None and re.search(rf"(?<![\d.-]){re.escape(str(info['answer']))}(?!\d|\.\d)",
                                                      reply) is not None
        made = [(c.name, _canonical(c.kwargs)) for t in trajectory.turns for c in t.calls]
        gold = [(c.name, _canonical(c.kwargs)) for step in gold_calls(trajectory.task.gold) for c in step]
        matched = 0
        for g in gold:
            if g in made:
                made.remove(g)
                matched += 1
        calls = matched / len(gold) if gold else 1.0
        clean = not any(o.error for o in trajectory.observations)
        fmt = float(reply is not None and clean and not trajectory.turns[-1].calls)
        return {"reward": 0.6 * success + 0.3 * calls + 0.1 * fmt, "success": float(success), "calls": calls,
                "format": fmt}

    def reference_turns(self, task: EnvTask) -> list[str]:
        steps = [render_reply(step, None, self.prompt_format) for step in gold_calls(task.gold)]
        return steps + [render_reply([], task.info["reply"], self.prompt_format)]


def final_reply(text: str, prompt_format: str):
    """The reply of a final turn: its last `<response>` block; in the Hermes format also plain text outside
    `<think>` and `<tool_call>` blocks (Qwen3 models reply without tags). None when there is none."""
    replies = _RESPONSE.findall(text)
    if replies:
        return replies[-1]
    if prompt_format == "hermes":
        plain = re.sub(r"<(think|tool_call)>.*?(</\1>|$)", "", text, flags=re.DOTALL).strip()
        return plain or None
    return None


def _canonical(kwargs: dict) -> str:
    return json.dumps(kwargs, sort_keys=True)


def _call(function: str, **arguments) -> dict:
    return {"name": function, "arguments": arguments}


def make_task(uid: str, rng: random.Random, kind: str) -> EnvTask:
    cities = rng.sample(CITIES, 4)
    names = rng.sample(NAMES, 4)
    user_ids = rng.sample(range(1, 10), 4)
    state = {"temperatures": {c: rng.randint(0, 9) for c in cities},
             "contacts": {n: {"user_id": u, "city": rng.choice(cities)} for n, u in zip(names, user_ids)}}
    info: dict = {"kind": kind}
    if kind == "compute":
        op = rng.choice(["add", "multiply"])
        a, b = rng.choice(_SMALL_SUMS if op == "add" else _SMALL_PRODUCTS)
        answer = a + b if op == "add" else a * b
        text, gold = f"What is {a} {'plus' if op == 'add' else 'times'} {b}?", [[_call(op, a=a, b=b)]]
        info["tools"] = ["multiply", "add", "get_temperature"]
    elif kind == "lookup_answer":
        city = rng.choice(cities)
        answer = state["temperatures"][city]
        text, gold = f'What\'s the temperature in "{city}" right now?', [[_call("get_temperature", city=city)]]
        info["tools"] = ["get_temperature", "lookup_contact", "add"]
    elif kind == "lookup_act":
        name, word = rng.choice(names), rng.choice(WORDS)
        user_id = state["contacts"][name]["user_id"]
        text = f'Send the word "{word}" to "{name}".'
        gold = [[_call("lookup_contact", contact=name)], [_call("send_message", user_id=user_id, text=word)]]
        answer, info["outbox"] = None, [{"user_id": user_id, "text": word}]
        info["tools"] = ["lookup_contact", "send_message", "get_temperature"]
    elif kind == "chain":
        name = rng.choice(names)
        city = state["contacts"][name]["city"]
        answer = state["temperatures"][city]
        text = f'What\'s the temperature where "{name}" lives?'
        gold = [[_call("lookup_contact", contact=name)], [_call("get_temperature", city=city)]]
        info["tools"] = ["lookup_contact", "get_temperature", "send_message"]
    else:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {KINDS}")
    rng.shuffle(info["tools"])
    info["answer"] = answer
    info["reply"] = f"Done, I sent it to {gold[0][0]['arguments']['contact']}." if answer is None else f"The answer is {answer}."
    return EnvTask(uid, "embedded_multiturn", [{"role": "user", "content": text}], state, gold, info)


def generate_split(n_train: int, n_val: int, seed: int) -> tuple[list[EnvTask], list[EnvTask]]:
    """Deterministic train/val task lists; a validation task (request and world state) never appears in train.

    The requests themselves recur (cities, names, words and small numbers come from closed sets), so what the
    validation split holds out is the world: the temperatures, ids and homes the answer must be read from."""
    rng = random.Random(seed)
    train = [make_task(f"mt-train-{i}", rng, KINDS[i % len(KINDS)]) for i in range(n_train)]
    seen = {_key(t) for t in train}
    val, rng_val, tries = [], random.Random(seed + 1_000_003), 0
    while len(val) < n_val and tries < 100 * max(n_val, 1):
        task = make_task(f"mt-val-{len(val)}", rng_val, KINDS[tries % len(KINDS)])
        tries += 1
        if _key(task) not in seen:
            seen.add(_key(task))
            val.append(task)
    return train, val


def generate_pool(n: int, seed: int, held_out: list[EnvTask]) -> list[EnvTask]:
    """`n` tasks drawn fresh from the generator (kinds in turn), none in the world of a `held_out` task: the
    warm start's demonstrations (`rest.models.agent_sft`), so a validation split stays unseen."""
    rng, avoid = random.Random(seed), {_key(t) for t in held_out}
    pool, tries = [], 0
    while len(pool) < n:
        if tries >= 10 * n:
            raise RuntimeError(f"drew only {len(pool)} of {n} tasks outside the held-out split in {tries} tries")
        task = make_task(f"mt-pool-{len(pool)}", rng, KINDS[tries % len(KINDS)])
        tries += 1
        if _key(task) not in avoid:
            pool.append(task)
    return pool


def early_reply(task: EnvTask, rng: random.Random) -> str | None:
    """The demonstrator's slip on a two-call task: the final reply it gives right after the FIRST call's result,
    without making the second call (a wrong temperature guessed for `chain`, a claim of having sent the message
    for `lookup_act`). None for one-call tasks (they have no second call to skip)."""
    kind = task.info["kind"]
    if kind == "lookup_act":
        return task.info["reply"]  # "Done, I sent it to ..." with nothing sent
    if kind == "chain":
        return f"The answer is {rng.choice([d for d in range(10) if d != task.info['answer']])}."
    return None


def _key(task: EnvTask) -> str:
    # requests come from small sets and recur; what must not recur is a request in the same world (state)
    return json.dumps([task.messages, task.state], sort_keys=True)


__all__ = ["EmbeddedMultiTurnEnv", "KINDS", "early_reply", "generate_pool", "generate_split", "make_task"]
