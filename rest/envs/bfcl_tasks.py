"""A seeded generator of tasks on BFCL's simulated classes, written by us (never drawn from BFCL's entries).

Each template draws an initial state from our own name lists, writes an instruction and the gold calls per
model turn; dependent templates need the first turn's result for the second turn's arguments (a file found
before it is moved, a user id looked up before a message is sent, a sum before it is multiplied).
`tests/envs/test_bfcl_tasks.py` checks that no instruction, initial state or gold sequence occurs in BFCL's
multi-turn evaluation data.
"""

from __future__ import annotations

import json
import random

from rest.envs.base import EnvTask

WORDS = ["amber", "basil", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper", "kelp",
         "lumen", "maple", "nectar", "onyx", "pebble", "quartz", "russet", "sable", "tundra", "umber", "velvet"]
EXTENSIONS = [".txt", ".md", ".csv", ".log"]
PEOPLE = ["Odile", "Pavel", "Quinn", "Rosa", "Soren", "Talia", "Ugo", "Vera", "Wendell", "Xenia", "Yusuf", "Zora"]
PHRASES = ["the build is green", "ship it friday", "notes are uploaded", "coffee at ten", "rollback done",
           "ticket triaged", "draft looks good", "budget approved"]
TEMPLATES = ("fs_mkdir_touch", "fs_write_read", "fs_count_lines", "fs_find_move", "math_mean", "math_chain",
             "twitter_login_post", "message_lookup_send")


def _call(function: str, **arguments) -> dict:
    return {"name": function, "arguments": arguments}


def _file_name(rng: random.Random, taken: set) -> str:
    while True:
        name = f"{rng.choice(WORDS)}_{rng.randint(10, 99)}{rng.choice(EXTENSIONS)}"
        if name not in taken:
            taken.add(name)
            return name


def _file_system(rng: random.Random) -> tuple[dict, dict, set]:
    """(BFCL scenario, {file: content} in the top folder, names taken)."""
    taken: set = set()
    files = {}
    for _ in range(rng.randint(2, 3)):
        lines = [" ".join(rng.sample(WORDS, 3)) for _ in range(rng.randint(1, 5))]
        files[_file_name(rng, taken)] = "\n".join(lines)
    sub = f"{rng.choice(WORDS)}_dir"
    taken.add(sub)
    contents = {n: {"type": "file", "content": c} for n, c in files.items()}
    contents[sub] = {"type": "directory", "contents": {}}
    root = f"ws_{rng.choice(WORDS)}"
    return {"root": {root: {"type": "directory", "contents": contents}}}, files, taken


def make_task(uid: str, rng: random.Random, template: str) -> EnvTask:
    if template.startswith("fs_"):
        config, files, taken = _file_system(rng)
        classes, cls_config = ["GorillaFileSystem"], {"GorillaFileSystem": config}
        if template == "fs_mkdir_touch":
            folder, new_file = f"{rng.choice(WORDS)}_{rng.randint(100, 999)}", _file_name(rng, taken)
            text = f"Make a new folder called '{folder}' here, step into it and create an empty file '{new_file}'."
            gold = [[_call("mkdir", dir_name=folder), _call("cd", folder=folder), _call("touch", file_name=new_file)]]
        elif template == "fs_write_read":
            new_file, phrase = _file_name(rng, taken), rng.choice(PHRASES)
            text = f"Put the text '{phrase}' into a new file named '{new_file}', then print what that file holds."
            gold = [[_call("echo", content=phrase, file_name=new_file), _call("cat", file_name=new_file)]]
        elif template == "fs_count_lines":
            name = rng.choice(sorted(files))
            text = f"Count the lines of '{name}' for me."
            gold = [[_call("wc", file_name=name, mode="l")]]
        else:  # fs_find_move: the name is only known after find
            name = rng.choice(sorted(files))
            folder = next(n for n, v in config["root"][next(iter(config["root"]))]["contents"].items()
                          if v["type"] == "directory")
            stem = name.split("_")[0]
            others = [n for n in files if n != name and n.startswith(stem)]
            if others:  # the keyword must find exactly one file
                return make_task(uid, rng, template)
            text = f"Some file here has '{stem}' in its name; locate it and move it into the '{folder}' folder."
            gold = [[_call("find", path=".", name=stem)], [_call("mv", source=name, destination=folder)]]
    elif template.startswith("math_"):
        classes, cls_config = ["MathAPI"], {}
        if template == "math_mean":
            numbers = [rng.randint(1, 400) for _ in range(rng.randint(3, 6))]
            text = f"I logged these readings: {', '.join(map(str, numbers))}. What is their mean?"
            gold = [[_call("mean", numbers=numbers)]]
        else:
            a, b, factor = rng.randint(10, 900), rng.randint(10, 900), rng.randint(3, 29)
            text = f"Sum {a} and {b}, then multiply that total by {factor}."
            gold = [[_call("add", a=a, b=b)], [_call("multiply", a=a + b, b=factor)]]
    elif template == "twitter_login_post":
        user, password = f"{rng.choice(WORDS)}{rng.randint(1, 99)}", f"pw{rng.randint(10000, 99999)}"
        phrase, tag = rng.choice(PHRASES), f"#{rng.choice(WORDS)}"
        classes = ["TwitterAPI"]
        cls_config = {"TwitterAPI": {"username": user, "password": password, "authenticated": False, "tweets": {},
                                     "comments": {}, "retweets": {}, "following_list": rng.sample(PEOPLE, 2),
                                     "tweet_counter": rng.randint(0, 40)}}
        text = f"Sign me in (account {user}, password {password}) and tweet '{phrase}' with the tag {tag}."
        gold = [[_call("authenticate_twitter", username=user, password=password),
                 _call("post_tweet", content=phrase, tags=[tag])]]
    elif template == "message_lookup_send":
        people = rng.sample(PEOPLE, 4)
        ids = {p: f"USR{rng.randint(100, 999)}" for p in people}
        if len(set(ids.values())) < len(ids):
            return make_task(uid, rng, template)
        me, target, phrase = people[0], rng.choice(people[1:]), rng.choice(PHRASES)
        classes = ["MessageAPI"]
        cls_config = {"MessageAPI": {"user_count": len(people), "user_map": ids, "inbox": [], "message_count": 0,
                                     "current_user": ids[me], "random_seed": rng.randint(1, 10**6)}}
        text = f"Message {target} on the workspace chat: '{phrase}'."
        gold = [[_call("get_user_id", user=target)], [_call("send_message", receiver_id=ids[target], message=phrase)]]
    else:
        raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")
    state = {"involved_classes": classes, "initial_config": cls_config}
    return EnvTask(uid, "bfcl_sim", [{"role": "user", "content": text}], state, gold, {"template": template})


def generate_tasks(n_train: int, n_val: int, seed: int) -> tuple[list[EnvTask], list[EnvTask]]:
    """Train/val task lists, templates in rotation; a validation task's instruction never appears in train."""
    rng = random.Random(seed)
    train = [make_task(f"bfcl-sim-train-{i}", rng, TEMPLATES[i % len(TEMPLATES)]) for i in range(n_train)]
    seen = {json.dumps(t.messages) for t in train}
    val, rng_val, tries = [], random.Random(seed + 1_000_003), 0
    while len(val) < n_val and tries < 100 * max(n_val, 1):
        task = make_task(f"bfcl-sim-val-{len(val)}", rng_val, TEMPLATES[tries % len(TEMPLATES)])
        tries += 1
        if json.dumps(task.messages) not in seen:
            seen.add(json.dumps(task.messages))
            val.append(task)
    return train, val
