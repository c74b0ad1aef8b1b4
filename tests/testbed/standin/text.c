/* Small string, memory and comparison helpers, since the stand-in links no C library. */
#include "standin.h"

/*
 * The compiler may emit calls to memcpy and memset for structure copies and
 * zeroing even in freestanding mode, so the image has to define them.
 */
void *memcpy(void *destination, const void *source, UINTN size)
{
    UINT8 *to = destination;
    const UINT8 *from = source;
    while (size-- > 0) {
        *to++ = *from++;
    }
    return destination;
}

void *memset(void *destination, int value, UINTN size)
{
    UINT8 *to = destination;
    while (size-- > 0) {
        *to++ = (UINT8)value;
    }
    return destination;
}

void text_init(TEXT *text, CHAR8 *buffer, UINTN capacity)
{
    text->chars = buffer;
    text->length = 0;
    text->capacity = capacity;
    buffer[0] = '\0';
}

void text_append_char(TEXT *text, CHAR8 c)
{
    /* One byte of the capacity stays reserved for the terminating NUL. */
    if (text->length + 1 >= text->capacity) {
        return;
    }
    text->chars[text->length++] = c;
    text->chars[text->length] = '\0';
}

void text_append(TEXT *text, const CHAR8 *string)
{
    while (*string != '\0') {
        text_append_char(text, *string++);
    }
}

void text_append_decimal(TEXT *text, UINT64 value)
{
    CHAR8 digits[20];
    UINTN count = 0;
    do {
        digits[count++] = (CHAR8)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    while (count > 0) {
        text_append_char(text, digits[--count]);
    }
}

/* Appends the low `digits` hexadecimal digits of value, upper case, without a prefix. */
void text_append_hex(TEXT *text, UINT64 value, UINTN digits)
{
    static const CHAR8 hex[] = "0123456789ABCDEF";
    while (digits > 0) {
        digits--;
        text_append_char(text, hex[(value >> (digits * 4)) & 0xf]);
    }
}

UINTN ascii_length(const CHAR8 *string)
{
    UINTN length = 0;
    while (string[length] != '\0') {
        length++;
    }
    return length;
}

BOOLEAN ucs2_equal(const CHAR16 *left, const CHAR16 *right)
{
    while (*left != 0 && *left == *right) {
        left++;
        right++;
    }
    return *left == *right;
}

BOOLEAN guid_equal(const EFI_GUID *left, const EFI_GUID *right)
{
    const UINT8 *a = (const UINT8 *)left;
    const UINT8 *b = (const UINT8 *)right;
    for (UINTN i = 0; i < sizeof(EFI_GUID); i++) {
        if (a[i] != b[i]) {
            return FALSE;
        }
    }
    return TRUE;
}

BOOLEAN is_space(CHAR8 c)
{
    return c == ' ' || c == '\t';
}
