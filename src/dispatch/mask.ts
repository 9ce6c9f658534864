/**
 * Masks a phone number for logs, keeping only its last 3 digits.
 *
 * Phone numbers are personal data, so logs show `***567` for
 * `+1 555 123 4567`: enough to tell messages apart, and the fixed prefix
 * hides the length. A value with 3 digits or fewer is masked completely.
 */
export function maskPhone(phone: string): string {
  if (phone === "") {
    return "";
  }
  const digits = phone.replace(/[^0-9]/g, "");
  if (digits.length <= 3) {
    return "***";
  }
  return `***${digits.slice(-3)}`;
}
