/*
 * Declarations shared by the stand-in payload's source files.
 *
 * The builder compiles the same sources into three flavours by defining one of
 * STANDIN_FLAVOUR_DRIVER, STANDIN_FLAVOUR_RUNTIME_DRIVER or
 * STANDIN_FLAVOUR_APPLICATION, and it defines STANDIN_VERSION as a string.
 */
#ifndef STANDIN_H
#define STANDIN_H

#include "uefi.h"

/*
 * The kind spellings appear in the .swos metadata (kind=), on the console
 * (started kind=) and in SwitchOSStatus (loaded-as=):
 *   driver          boot-service driver, PE subsystem 11, started from Driver####
 *   runtime-driver  runtime driver, PE subsystem 12, started from Driver####
 *   application     application, PE subsystem 10, started from Boot####
 */
#define KIND_DRIVER "driver"
#define KIND_RUNTIME_DRIVER "runtime-driver"
#define KIND_APPLICATION "application"

#if defined(STANDIN_FLAVOUR_DRIVER)
#define STANDIN_KIND KIND_DRIVER
#elif defined(STANDIN_FLAVOUR_RUNTIME_DRIVER)
#define STANDIN_KIND KIND_RUNTIME_DRIVER
#elif defined(STANDIN_FLAVOUR_APPLICATION)
#define STANDIN_KIND KIND_APPLICATION
#else
#error "define one of STANDIN_FLAVOUR_DRIVER, STANDIN_FLAVOUR_RUNTIME_DRIVER, STANDIN_FLAVOUR_APPLICATION"
#endif

#ifndef STANDIN_VERSION
#error "define STANDIN_VERSION as a string, for example -DSTANDIN_VERSION='\"0.1.0\"'"
#endif

#define STANDIN_NAME "switchos-standin"
#define STANDIN_PROTOCOL "1"

/* Every console line starts with this prefix, so a test can tell them from firmware output. */
#define CONSOLE_PREFIX STANDIN_NAME ": "

/* The decoded load options are cut to this many characters, so every line and variable fits. */
#define MAX_OPTIONS_LENGTH 1024

/* The room for the SwitchOSStatus text, including the lines the runtime hook adds. */
#define MAX_STATUS_LENGTH (MAX_OPTIONS_LENGTH + 512)

extern EFI_SYSTEM_TABLE *gST;
extern EFI_BOOT_SERVICES *gBS;
extern EFI_RUNTIME_SERVICES *gRT;

/* The SwitchOS vendor GUID e21c66ed-bc2e-4d30-ac5e-1b968002c541 and the variables under it. */
extern EFI_GUID switchos_vendor_guid;
extern const CHAR16 status_variable_name[];

/*
 * An ASCII string builder over a caller's buffer. It always keeps the text
 * NUL-terminated and drops what does not fit, so a long value is cut, never
 * written past the buffer.
 */
typedef struct {
    CHAR8 *chars;
    UINTN length;
    UINTN capacity;
} TEXT;

/* Defined in text.c; the compiler may also emit calls to them on its own. */
void *memcpy(void *destination, const void *source, UINTN size);
void *memset(void *destination, int value, UINTN size);

void text_init(TEXT *text, CHAR8 *buffer, UINTN capacity);
void text_append(TEXT *text, const CHAR8 *string);
void text_append_char(TEXT *text, CHAR8 c);
void text_append_decimal(TEXT *text, UINT64 value);
void text_append_hex(TEXT *text, UINT64 value, UINTN digits);
UINTN ascii_length(const CHAR8 *string);
BOOLEAN ucs2_equal(const CHAR16 *left, const CHAR16 *right);
BOOLEAN guid_equal(const EFI_GUID *left, const EFI_GUID *right);
BOOLEAN is_space(CHAR8 c);

/* Writes an ASCII string to ConOut; "\n" in it must already be "\r\n". */
VOID console_write(const CHAR8 *string);

/* Application flavour: loads and starts the image named by chain=<path> in the options. */
EFI_STATUS chain_load(EFI_HANDLE image_handle, EFI_LOADED_IMAGE_PROTOCOL *loaded_image, const CHAR8 *options);

/*
 * Runtime-driver flavour: replaces GetVariable and SetVariable in the runtime
 * services table with hooks that run from a copy of this image. status_text
 * is the SwitchOSStatus text without the lines about the pending action,
 * which the GetVariable hook adds.
 */
EFI_STATUS install_variable_hooks(const EFI_LOADED_IMAGE_PROTOCOL *loaded_image, const CHAR8 *status_text);

#endif
