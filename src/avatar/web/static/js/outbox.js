// Typed messages on their way to the server: shown as "Sending…" until the server starts
// answering, sent again after a reconnect, and marked "Not delivered" (and handed to the
// sign-in page) when they cannot be sent at all.
export class Outbox {
  constructor(socket, log) {
    this.socket = socket;
    this.log = log;
    this.waiting = []; // typed while the connection was down: sent once it is back
    this.unconfirmed = []; // sent, no answer started yet
  }

  /** Send `text` (shown in `item`) now, or as soon as the connection is back. */
  send(text, item) {
    const message = { text, item };
    this.log.delivery(item, "pending");
    if (this.socket.isOpen) this.deliver(message);
    else {
      this.waiting.push(message);
      this.socket.connect();
    }
  }

  deliver(message) {
    this.socket.send({ type: "text", text: message.text });
    this.unconfirmed.push(message);
  }

  /** A new session is open: send what waited. */
  flush() {
    for (const message of this.waiting.splice(0)) this.deliver(message);
  }

  /** The server started answering: the oldest message sent has arrived. */
  confirm() {
    const message = this.unconfirmed.shift();
    if (message) this.log.delivery(message.item, "sent");
  }

  /** The connection dropped: what was sent and not answered is sent again on the next one. */
  requeue() {
    this.waiting.unshift(...this.unconfirmed.splice(0));
    for (const message of this.waiting) this.log.delivery(message.item, "pending");
  }

  /** Messages that never reached the server; they are marked failed. */
  undelivered() {
    const lost = [...this.unconfirmed.splice(0), ...this.waiting.splice(0)];
    for (const message of lost) this.log.delivery(message.item, "failed");
    return lost.map((m) => m.text);
  }
}
