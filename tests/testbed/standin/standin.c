/*
 * The stand-in payload: a UEFI image that behaves like the SwitchOS payload at
 * the points the installer and the runtime CLI depend on. It carries .swos
 * metadata, prints one line on ConOut when started, publishes SwitchOSStatus
 * and, depending on the flavour, chain-loads the OS loader (application) or
 * hooks the variable services (runtime driver).
 */
#include "standin.h"

EFI_SYSTEM_TABLE *gST;
EFI_BOOT_SERVICES *gBS;
EFI_RUNTIME_SERVICES *gRT;

EFI_GUID switchos_vendor_guid = {0xe21c66ed, 0xbc2e, 0x4d30, {0xac, 0x5e, 0x1b, 0x96, 0x80, 0x02, 0xc5, 0x41}};
const CHAR16 status_variable_name[] = L"SwitchOSStatus";

static EFI_GUID loaded_image_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;

/*
 * The metadata the installer reads from the PE file: key=value lines, each
 * ended by "\n". The section also contains the array's terminating NUL, and the
 * linker pads the raw section data with NULs, which readers strip.
 */
__attribute__((section(".swos"), used)) static const CHAR8 swos_metadata[] =
    "protocol=" STANDIN_PROTOCOL "\n"
    "name=" STANDIN_NAME "\n"
    "version=" STANDIN_VERSION "\n"
    "kind=" STANDIN_KIND "\n"
    "store=partition\n"
    "disks=virtio-blk,nvme,ahci\n"
#if defined(STANDIN_FLAVOUR_APPLICATION)
    "chainload=yes\n"
#endif
    ;

/* Static rather than on the stack, because the image has no stack probe routine for large frames. */
static CHAR8 options_buffer[MAX_OPTIONS_LENGTH + 1];
static CHAR8 status_buffer[MAX_STATUS_LENGTH];
static CHAR8 line_buffer[MAX_OPTIONS_LENGTH + 128];

VOID console_write(const CHAR8 *string)
{
    CHAR16 chunk[128];
    UINTN used = 0;

    if (gST->ConOut == NULL) {
        return;
    }
    while (*string != '\0') {
        chunk[used++] = (CHAR16)(UINT8)*string++;
        if (used == sizeof(chunk) / sizeof(chunk[0]) - 1 || *string == '\0') {
            chunk[used] = 0;
            gST->ConOut->OutputString(gST->ConOut, chunk);
            used = 0;
        }
    }
}

static CHAR8 printable(UINT32 character)
{
    return (character >= 0x20 && character <= 0x7e) ? (CHAR8)character : '?';
}

/*
 * Returns whether the load options look like UCS-2 text: an even size of at
 * least two bytes, and every 16-bit unit before the first NUL unit in the
 * range 0x0001 to 0x00FF. ASCII or UTF-8 text of two or more characters never
 * passes, because its second byte, the high byte of the first unit, is not zero.
 */
static BOOLEAN looks_like_ucs2(const UINT8 *data, UINT32 size)
{
    if (size < 2 || size % 2 != 0) {
        return FALSE;
    }
    for (UINT32 offset = 0; offset + 1 < size; offset += 2) {
        if (data[offset] == 0 && data[offset + 1] == 0) {
            break;
        }
        if (data[offset + 1] != 0) {
            return FALSE;
        }
    }
    return TRUE;
}

/*
 * Decodes the load options (LoadedImage->LoadOptions, the OptionalData of the
 * load option that started the image) into printable ASCII. UCS-2 text is
 * decoded per 16-bit unit, anything else per byte; decoding stops at the first
 * NUL character. Every character outside 0x20..0x7E, including each byte of
 * a UTF-8 sequence, becomes '?', so the text stays on one console line and in
 * the ASCII status variable. At most MAX_OPTIONS_LENGTH characters are kept.
 */
static VOID decode_load_options(const EFI_LOADED_IMAGE_PROTOCOL *loaded_image, TEXT *options)
{
    const UINT8 *data = loaded_image->LoadOptions;
    UINT32 size = loaded_image->LoadOptionsSize;

    if (data == NULL) {
        return;
    }
    if (looks_like_ucs2(data, size)) {
        for (UINT32 offset = 0; offset + 1 < size; offset += 2) {
            UINT32 unit = data[offset] | ((UINT32)data[offset + 1] << 8);
            if (unit == 0) {
                break;
            }
            text_append_char(options, printable(unit));
        }
        return;
    }
    for (UINT32 offset = 0; offset < size && data[offset] != 0; offset++) {
        text_append_char(options, printable(data[offset]));
    }
}

/*
 * Kind names by the memory type of the image code. The firmware picks that
 * memory type from the PE subsystem, so loaded-as shows what the firmware did
 * rather than repeating the compiled-in kind. The table contains absolute
 * pointers, which give every flavour base relocations: without any, the
 * linker drops .reloc, and firmware could load the image only at its linked
 * address.
 */
static const CHAR8 *const kinds_by_code_type[] = {
    [EfiLoaderCode] = KIND_APPLICATION,
    [EfiBootServicesCode] = KIND_DRIVER,
    [EfiRuntimeServicesCode] = KIND_RUNTIME_DRIVER,
};

static const CHAR8 *loaded_as(const EFI_LOADED_IMAGE_PROTOCOL *loaded_image)
{
    UINTN code_type = (UINTN)loaded_image->ImageCodeType;
    if (code_type >= sizeof(kinds_by_code_type) / sizeof(kinds_by_code_type[0]) ||
        kinds_by_code_type[code_type] == NULL) {
        return "unknown";
    }
    return kinds_by_code_type[code_type];
}

static VOID print_started(const CHAR8 *options)
{
    TEXT line;
    text_init(&line, line_buffer, sizeof(line_buffer));
    text_append(&line, CONSOLE_PREFIX "started kind=" STANDIN_KIND " options=\"");
    text_append(&line, options);
    text_append(&line, "\"\r\n");
    console_write(line.chars);
}

static VOID print_status_error(const CHAR8 *message, EFI_STATUS status)
{
    TEXT line;
    text_init(&line, line_buffer, sizeof(line_buffer));
    text_append(&line, CONSOLE_PREFIX "error: ");
    text_append(&line, message);
    text_append(&line, " (status 0x");
    text_append_hex(&line, status, 16);
    text_append(&line, ")\r\n");
    console_write(line.chars);
}

/*
 * Formats the SwitchOSStatus data: ASCII key=value lines, each ended by "\n",
 * without a terminating NUL. The runtime driver's GetVariable hook appends the
 * pending-action lines to this text.
 */
static VOID format_status(TEXT *status, const EFI_LOADED_IMAGE_PROTOCOL *loaded_image, const CHAR8 *options)
{
    text_append(status, "protocol=" STANDIN_PROTOCOL "\n");
    text_append(status, "version=" STANDIN_VERSION "\n");
    text_append(status, "loaded-as=");
    text_append(status, loaded_as(loaded_image));
    text_append(status, "\n");
    text_append(status, "options=");
    text_append(status, options);
    text_append(status, "\n");
}

/*
 * Stores SwitchOSStatus through the firmware's SetVariable. The variable is
 * volatile (BS|RT without NV), so it exists only during the boot in which the
 * stand-in ran.
 */
static EFI_STATUS publish_status(const TEXT *status)
{
    return gRT->SetVariable(
        (CHAR16 *)status_variable_name, &switchos_vendor_guid,
        EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS, status->length, status->chars);
}

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image_handle, EFI_SYSTEM_TABLE *system_table)
{
    EFI_LOADED_IMAGE_PROTOCOL *loaded_image = NULL;
    EFI_STATUS status;
    TEXT options;
    TEXT status_text;

    gST = system_table;
    gBS = system_table->BootServices;
    gRT = system_table->RuntimeServices;

    status = gBS->HandleProtocol(image_handle, &loaded_image_guid, (VOID **)&loaded_image);
    if (EFI_ERROR(status)) {
        print_status_error("cannot open the loaded image protocol", status);
        return status;
    }

    text_init(&options, options_buffer, sizeof(options_buffer));
    decode_load_options(loaded_image, &options);
    print_started(options.chars);

    text_init(&status_text, status_buffer, sizeof(status_buffer));
    format_status(&status_text, loaded_image, options.chars);
    status = publish_status(&status_text);
    if (EFI_ERROR(status)) {
        print_status_error("cannot set SwitchOSStatus", status);
    }

#if defined(STANDIN_FLAVOUR_RUNTIME_DRIVER)
    status = install_variable_hooks(loaded_image, status_text.chars);
    if (EFI_ERROR(status)) {
        print_status_error("cannot hook the variable services", status);
        return status;
    }
#endif

#if defined(STANDIN_FLAVOUR_APPLICATION)
    return chain_load(image_handle, loaded_image, options.chars);
#else
    /* A driver that returns EFI_SUCCESS stays loaded, as the real payload does. */
    return EFI_SUCCESS;
#endif
}
