"""The email notifier: the standard library's ``smtplib`` and ``email.message``.

STARTTLS with certificate checks (the system's CAs, or ``smtp_ca_file``), login when the
receiver names one, a plain-text and an HTML part, a review pack's files attached, and a
``Message-ID`` made from the idempotency key so a mail system can drop a repeat. The SMTP
server's reply to the message is the answer: 250 accepted; a refused sender, every
recipient refused, or a refused message is a refusal with the server's code and words.
A recipient refused while others were accepted is named in the answer's words.
"""

from __future__ import annotations

import email.utils
import smtplib
import ssl
from email.message import EmailMessage

from partnerboard.notifiers.answers import Answer, clip
from partnerboard.notifiers.notifier import Notifier
from partnerboard.notifiers.receiver_secrets import configured_secret

from partnerboard.core.alerts.messages import Rendered
from partnerboard.core.config.alerts import Receiver


def render(receiver: Receiver, message: Rendered, idempotency_key: str) -> EmailMessage:
    """The email as it is sent: headers, the text part, the HTML part, attachments."""
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = receiver.sender or ""
    mail["To"] = ", ".join(receiver.to)
    mail["Date"] = email.utils.formatdate(localtime=False)
    mail["Message-ID"] = f"<{idempotency_key}@partnerboard>"
    mail["X-Partnerboard-Idempotency-Key"] = idempotency_key
    mail.set_content(message.text)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    for f in message.attachments:  # a review pack's PDF and CSV
        maintype, _, subtype = f.media_type.partition("/")
        mail.add_attachment(f.content, maintype=maintype, subtype=subtype or "octet-stream", filename=f.name)
    return mail


def send(receiver: Receiver, mail: EmailMessage, idempotency_key: str) -> Answer:
    """One SMTP conversation: EHLO, STARTTLS, login, MAIL, RCPT for each recipient, DATA."""
    username = configured_secret(receiver, receiver.username_env)
    password = configured_secret(receiver, receiver.password_env)
    context = ssl.create_default_context(cafile=receiver.smtp_ca_file) if receiver.starttls else None
    try:
        with smtplib.SMTP(receiver.smtp_host or "", receiver.smtp_port,
                          timeout=receiver.timeout_seconds) as smtp:
            smtp.ehlo()
            if context is not None:
                smtp.starttls(context=context)
                smtp.ehlo()
            if username:
                smtp.login(username, password or "")
            code, reply = smtp.mail(receiver.sender or "")
            if code != 250:
                return Answer(False, code, clip(reply.decode(errors="replace")))
            accepted = 0
            refused = []
            for to in receiver.to:
                code, reply = smtp.rcpt(to)
                if code in (250, 251):
                    accepted += 1
                else:
                    refused.append(f"{to}: {code} {reply.decode(errors='replace')}")
            if not accepted:
                smtp.rset()
                return Answer(False, code, clip("; ".join(refused)))
            # bytes go out as they are: the lines must already end in CRLF (RFC 5321)
            code, reply = smtp.data(mail.as_bytes(policy=mail.policy.clone(linesep="\r\n")))
            words = reply.decode(errors="replace")
            if refused:
                words += " (refused: " + "; ".join(refused) + ")"
            return Answer(code == 250, code, clip(words))
    except smtplib.SMTPResponseException as exc:
        raw = exc.smtp_error
        error = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return Answer(False, exc.smtp_code, clip(error))
    except (OSError, smtplib.SMTPException) as exc:
        return Answer(False, 0, clip(f"{type(exc).__name__}: {exc}"))


NOTIFIER: Notifier[EmailMessage] = Notifier("email", render=render, send=send)
