"""The project folder the certificate and abonement tests write: automator.yaml with forms that sell them."""
from __future__ import annotations

CONFIG = """\
timezone: Europe/Moscow
branches:
  main: {hours: "09:00-21:00", days: mon-sat}
default_branch: main
connectors:
  booking: {type: local}
  sms: {type: local}
  forms:
    type: local
    events:
      package.sold: {entity: client, data: {package: text}}
      gift.sold: {entity: client, data: {amount: money}}
      gift.paid: {entity: client, data: {number: text, amount: money}}
      freeze.asked: {entity: client, data: {number: text, until: date}}
"""
