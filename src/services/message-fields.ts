import { longerThan } from "../domain/text-length.js";

// Lengths are counted in code points, so an emoji counts once, as a person would count it.
const MAX_RECIPIENT_LENGTH = 64;
const MAX_CONTENT_LENGTH = 10_000;
const MAX_SENDER_LENGTH = 64;

/** Returns why `to` cannot be the recipient of an SMS, or null when it can. */
export function recipientProblem(to: string): string | null {
  if (to.trim() === "") {
    return "required: the recipient's phone number";
  }
  if (longerThan(to, MAX_RECIPIENT_LENGTH)) {
    return `longer than ${MAX_RECIPIENT_LENGTH} characters`;
  }
  if (/\p{Cc}/u.test(to)) {
    return "contains control characters";
  }
  return null;
}

/** Returns why `content` cannot be the text of an SMS, or null when it can. */
export function contentProblem(content: string): string | null {
  if (content === "") {
    return "required: the text of the message";
  }
  if (longerThan(content, MAX_CONTENT_LENGTH)) {
    return `longer than ${MAX_CONTENT_LENGTH} characters`;
  }
  return null;
}

/**
 * Returns why `sender` cannot override the default sender, or null when it
 * can or is unset. `fallbackSender` names the sender used when it is unset.
 */
export function senderProblem(sender: string | undefined, fallbackSender = "the integration's default_sender"): string | null {
  if (sender === undefined) {
    return null;
  }
  if (sender.trim() === "") {
    return `is empty; leave it unset to use ${fallbackSender}`;
  }
  if (longerThan(sender, MAX_SENDER_LENGTH)) {
    return `longer than ${MAX_SENDER_LENGTH} characters`;
  }
  if (/\p{Cc}/u.test(sender)) {
    return "contains control characters";
  }
  return null;
}
