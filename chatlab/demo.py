"""``chatlab demo``: a few scripted users chat on a reference server, and we watch.

Each step is one action (a join, a line, a whisper, a departure) followed by the
lines it caused, as each user received them. The script waits for every expected
line before the next step, so the transcript is the same on every run with the
same seed, and it shows the protocol's guarantees at work: joins announced,
broadcasts to everyone else, private lines to one user only, leaves announced once.
"""

from __future__ import annotations

import random
import sys
from typing import TextIO

from faker import Faker

from chatlab.client import ChatClient, NameRefused
from chatlab.protocol import is_valid_name
from chatlab.server import ChatServer

WAIT = 5.0  # seconds to wait for any one expected line


def fake_names(fake: Faker, count: int) -> list[str]:
    """``count`` distinct first names that are valid chat names."""
    names: list[str] = []
    while len(names) < count:
        name = fake.first_name()
        if is_valid_name(name) and name.casefold() not in {known.casefold() for known in names}:
            names.append(name)
    return names


class Demo:
    """The room as the script sees it: who is online, and a printer for the transcript."""

    def __init__(self, host: str, port: int, out: TextIO) -> None:
        self.host = host
        self.port = port
        self.out = out
        self.online: dict[str, ChatClient] = {}
        self.width = 10

    def step(self, text: str) -> None:
        print(f"\n{text}", file=self.out)

    def show(self, who: str, line: str) -> None:
        print(f"    {who:<{self.width}} <- {line}", file=self.out)

    def receive(self, who: str) -> None:
        """Wait for the next line at ``who`` and print it."""
        self.show(who, self.online[who].next_received(WAIT).text)

    def join(self, name: str) -> None:
        self.step(f"{name} joins")
        client = ChatClient.connect(self.host, self.port, name, timeout=WAIT)
        others = list(self.online)
        self.online[name] = client
        self.show(name, client.greeting or "")
        for other in others:
            self.receive(other)

    def try_taken_name(self, name: str) -> None:
        self.step(f"someone else tries the name {name}")
        try:
            ChatClient.connect(self.host, self.port, name, timeout=WAIT).close()
        except NameRefused as refusal:
            self.show("(newcomer)", refusal.line)

    def say(self, name: str, text: str) -> None:
        self.step(f"{name} types: {text}")
        self.online[name].say(text)
        for other in self.online:
            if other != name:
                self.receive(other)

    def whisper(self, name: str, target: str, text: str) -> None:
        self.step(f"{name} types: @{target} {text}")
        self.online[name].whisper(target, text)
        self.receive(target)

    def users(self, name: str) -> None:
        self.step(f"{name} types: /users")
        self.online[name].command("/users")
        self.receive(name)

    def leave(self, name: str) -> None:
        self.step(f"{name} types: /quit")
        client = self.online.pop(name)
        for line in client.quit(WAIT):
            self.show(name, line)
        for other in self.online:
            self.receive(other)


def run(users: int = 4, rounds: int = 3, seed: int = 1, out: TextIO = sys.stdout) -> int:
    """Play the demo; returns the exit status."""
    fake = Faker()
    fake.seed_instance(seed)
    chance = random.Random(seed)
    names = fake_names(fake, max(users, 2))
    with ChatServer(host="127.0.0.1", port=0) as server:
        host, port = server.address
        print(f"chatlab demo: a reference server on {host}:{port}, {len(names)} scripted users, seed {seed}", file=out)
        demo = Demo(host, port, out)
        demo.width = max(len(name) for name in names + ["(newcomer)"])
        try:
            for name in names:
                demo.join(name)
            demo.try_taken_name(names[0].upper())
            for _ in range(rounds):
                for name in names:
                    demo.say(name, fake.sentence(nb_words=chance.randint(3, 9)))
                sender, target = chance.sample(names, 2)
                demo.whisper(sender, target, fake.sentence(nb_words=4))
            demo.users(names[-1])
            for name in names:
                demo.leave(name)
        finally:
            for client in demo.online.values():
                client.close()
    print("\nEveryone left; the server stopped cleanly.", file=out)
    return 0
