"""An SMTP sink for the alert tests: every message received is written to DIR as N.eml.

Run with aiosmtpd (PyPI, installed by scripts/setup.sh into /opt/pre-deploy/smtp):
    PYTHONPATH=tests/scripts python -m aiosmtpd -n -l 127.0.0.1:PORT -c smtp_sink.DirHandler DIR
"""

import os


class DirHandler:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("smtp_sink.DirHandler needs one argument: the directory")
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(self.directory, f"{self.count:04}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(f"X-Envelope-From: {envelope.mail_from}\r\n".encode())
            f.write(f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n".encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(path + ".tmp", path)
        return "250 OK"
