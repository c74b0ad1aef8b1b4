/*
 * Runtime-driver flavour: the command channel of the SwitchOS payload.
 *
 * The OS sends a command by writing the volatile variable SET_CORE_ACTION
 * under the SwitchOS vendor GUID with attributes BS|RT. The data is a
 * little-endian UINT32 action (0 no-op, 1 store, 2 switch), and protocol 1
 * appends a little-endian UINT32 slot index. The SetVariable hook keeps the
 * command as the pending action and never passes the write to the firmware,
 * because after ExitBootServices UEFI (8.2) lets the OS write only
 * non-volatile variables. The GetVariable hook serves SwitchOSStatus with
 * the pending action appended:
 *   pending-action=<decimal action, 0 when none>
 *   pending-slot=<decimal slot, 0 when none or sent without a slot>
 *   pending-data=<the accepted data bytes as upper-case hex, empty when none>
 * Every other call goes to the firmware's services unchanged.
 *
 * The hooks run from a copy of the whole image in pages of their own (see
 * install_variable_hooks). An absolute address in the copy would still point
 * into the original, so this code reaches its data only RIP-relative, with no
 * tables of pointers and no jump tables. The saved firmware service pointers
 * are converted in the virtual address change event, because the firmware
 * cannot know about them.
 */
#include "standin.h"

#define ACTION_SWITCH 2
#define COMMAND_SIZE_PROTOCOL_0 4
#define COMMAND_SIZE_PROTOCOL_1 8
#define COMMAND_ATTRIBUTES (EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS)

static const CHAR16 command_variable_name[] = L"SET_CORE_ACTION";

static EFI_GET_VARIABLE firmware_get_variable;
static EFI_SET_VARIABLE firmware_set_variable;
static EFI_EVENT virtual_address_event;

static CHAR8 base_status[MAX_STATUS_LENGTH];
static CHAR8 reply_buffer[MAX_STATUS_LENGTH];

static UINT32 pending_action;
static UINT32 pending_slot;
static UINT8 pending_data[COMMAND_SIZE_PROTOCOL_1];
static UINTN pending_size;

static UINT32 read_le32(const UINT8 *bytes)
{
    return bytes[0] | ((UINT32)bytes[1] << 8) | ((UINT32)bytes[2] << 16) | ((UINT32)bytes[3] << 24);
}

static BOOLEAN is_variable(const CHAR16 *name, const EFI_GUID *guid, const CHAR16 *expected_name)
{
    return name != NULL && guid != NULL && guid_equal(guid, &switchos_vendor_guid) && ucs2_equal(name, expected_name);
}

static VOID clear_pending(VOID)
{
    pending_action = 0;
    pending_slot = 0;
    pending_size = 0;
}

/*
 * Accepts a SET_CORE_ACTION write. A write with DataSize 0 or Attributes 0
 * deletes a variable in UEFI (8.2 SetVariable), so it clears the pending
 * action. Attributes other than BS|RT are rejected, because the command must
 * never reach NVRAM, and so are sizes other than 4 or 8 bytes and unknown
 * actions.
 */
static EFI_STATUS accept_command(UINT32 attributes, UINTN data_size, const UINT8 *data)
{
    if (data_size == 0 || attributes == 0) {
        clear_pending();
        return EFI_SUCCESS;
    }
    if (attributes != COMMAND_ATTRIBUTES || data == NULL) {
        return EFI_INVALID_PARAMETER;
    }
    if (data_size != COMMAND_SIZE_PROTOCOL_0 && data_size != COMMAND_SIZE_PROTOCOL_1) {
        return EFI_INVALID_PARAMETER;
    }
    UINT32 action = read_le32(data);
    if (action > ACTION_SWITCH) {
        return EFI_INVALID_PARAMETER;
    }

    pending_action = action;
    pending_slot = data_size == COMMAND_SIZE_PROTOCOL_1 ? read_le32(data + 4) : 0;
    memcpy(pending_data, data, data_size);
    pending_size = data_size;
    return EFI_SUCCESS;
}

static VOID format_reply(TEXT *reply)
{
    text_append(reply, base_status);
    text_append(reply, "pending-action=");
    text_append_decimal(reply, pending_action);
    text_append(reply, "\npending-slot=");
    text_append_decimal(reply, pending_slot);
    text_append(reply, "\npending-data=");
    for (UINTN i = 0; i < pending_size; i++) {
        text_append_hex(reply, pending_data[i], 2);
    }
    text_append(reply, "\n");
}

static EFI_STATUS EFIAPI hooked_get_variable(
    CHAR16 *name, EFI_GUID *guid, UINT32 *attributes, UINTN *data_size, VOID *data)
{
    if (!is_variable(name, guid, status_variable_name) || data_size == NULL) {
        return firmware_get_variable(name, guid, attributes, data_size, data);
    }

    TEXT reply;
    text_init(&reply, reply_buffer, sizeof(reply_buffer));
    format_reply(&reply);

    if (attributes != NULL) {
        *attributes = EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS;
    }
    if (*data_size < reply.length) {
        *data_size = reply.length;
        return EFI_BUFFER_TOO_SMALL;
    }
    if (data == NULL) {
        return EFI_INVALID_PARAMETER;
    }
    memcpy(data, reply.chars, reply.length);
    *data_size = reply.length;
    return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI hooked_set_variable(
    CHAR16 *name, EFI_GUID *guid, UINT32 attributes, UINTN data_size, VOID *data)
{
    if (is_variable(name, guid, command_variable_name)) {
        return accept_command(attributes, data_size, data);
    }
    return firmware_set_variable(name, guid, attributes, data_size, data);
}

/*
 * Runs during SetVirtualAddressMap, still at physical addresses, before the
 * firmware switches the runtime services table to virtual addresses.
 */
static VOID EFIAPI convert_saved_pointers(EFI_EVENT event, VOID *context)
{
    (VOID) event;
    (VOID) context;
    gRT->ConvertPointer(0, (VOID **)&firmware_get_variable);
    gRT->ConvertPointer(0, (VOID **)&firmware_set_variable);
}

/* Recomputes the table CRC32, which covers HeaderSize bytes with the CRC32 field zero (4.2). */
static VOID update_table_crc(EFI_TABLE_HEADER *header)
{
    UINT32 crc = 0;
    header->CRC32 = 0;
    gBS->CalculateCrc32(header, header->HeaderSize, &crc);
    header->CRC32 = crc;
}

/*
 * Installs the hooks from the image copy that runs this function. Every
 * global it touches is the copy's own, because the code reaches globals
 * through RIP-relative addresses.
 */
static EFI_STATUS EFIAPI install_hooks_in_place(const CHAR8 *status_text)
{
    TEXT base;
    text_init(&base, base_status, sizeof(base_status));
    text_append(&base, status_text);
    clear_pending();

    EFI_STATUS status = gBS->CreateEvent(
        EVT_SIGNAL_VIRTUAL_ADDRESS_CHANGE, TPL_NOTIFY, convert_saved_pointers, NULL, &virtual_address_event);
    if (EFI_ERROR(status)) {
        return status;
    }

    /* Nothing may call the variable services between the swap and the new CRC. */
    EFI_TPL old_tpl = gBS->RaiseTPL(TPL_HIGH_LEVEL);
    firmware_get_variable = gRT->GetVariable;
    firmware_set_variable = gRT->SetVariable;
    gRT->GetVariable = hooked_get_variable;
    gRT->SetVariable = hooked_set_variable;
    update_table_crc(&gRT->Hdr);
    gBS->RestoreTPL(old_tpl);
    return EFI_SUCCESS;
}

/* Finds the lowest address of any EfiRuntimeServicesCode range in the memory map. */
static EFI_STATUS find_lowest_runtime_code(EFI_PHYSICAL_ADDRESS *lowest)
{
    EFI_MEMORY_DESCRIPTOR *map = NULL;
    UINTN map_size = 0;
    UINTN map_key = 0;
    UINTN descriptor_size = 0;
    UINT32 descriptor_version = 0;
    EFI_STATUS status = gBS->GetMemoryMap(&map_size, NULL, &map_key, &descriptor_size, &descriptor_version);

    while (status == EFI_BUFFER_TOO_SMALL) {
        /* Allocating the buffer can split a range, so leave room for a few more descriptors. */
        map_size += 4 * descriptor_size;
        status = gBS->AllocatePool(EfiBootServicesData, map_size, (VOID **)&map);
        if (EFI_ERROR(status)) {
            return status;
        }
        status = gBS->GetMemoryMap(&map_size, map, &map_key, &descriptor_size, &descriptor_version);
        if (EFI_ERROR(status)) {
            gBS->FreePool(map);
            map = NULL;
        }
    }
    if (EFI_ERROR(status)) {
        return status;
    }

    *lowest = ~0ULL;
    for (UINTN offset = 0; offset + descriptor_size <= map_size; offset += descriptor_size) {
        const EFI_MEMORY_DESCRIPTOR *descriptor = (const EFI_MEMORY_DESCRIPTOR *)((UINT8 *)map + offset);
        if (descriptor->Type == EfiRuntimeServicesCode && descriptor->PhysicalStart < *lowest) {
            *lowest = descriptor->PhysicalStart;
        }
    }
    gBS->FreePool(map);
    return EFI_SUCCESS;
}

/*
 * Copies the whole image into EfiRuntimeServicesCode pages of their own and
 * installs the hooks from that copy.
 *
 * The loaded image itself cannot serve calls from the OS: edk2 (Debian 12's
 * OVMF 2022.11) records runtime images for the Memory Attributes Table only
 * until EndOfDxe, and Driver#### entries load later. The table then marks the
 * image's pages as non-executable runtime code next to the firmware's own
 * runtime drivers, and Linux 6.1 maps them NX, so the first runtime call
 * faults. A range of runtime code that contains no image gets neither RO nor
 * XP in the table, and the OS maps it executable. The copy goes below every
 * existing runtime code range, with at least a page between, so the memory
 * map does not merge it with a range that contains images.
 * NOTE: a runtime code allocation made later right next to the copy would be
 * merged with it and could turn it non-executable again.
 */
EFI_STATUS install_variable_hooks(const EFI_LOADED_IMAGE_PROTOCOL *loaded_image, const CHAR8 *status_text)
{
    EFI_PHYSICAL_ADDRESS lowest = 0;
    EFI_STATUS status = find_lowest_runtime_code(&lowest);
    if (EFI_ERROR(status)) {
        return status;
    }
    if (lowest < 2 * EFI_PAGE_SIZE) {
        return EFI_OUT_OF_RESOURCES;
    }

    EFI_PHYSICAL_ADDRESS copy = lowest - EFI_PAGE_SIZE - 1;
    status = gBS->AllocatePages(
        AllocateMaxAddress, EfiRuntimeServicesCode, EFI_SIZE_TO_PAGES(loaded_image->ImageSize), &copy);
    if (EFI_ERROR(status)) {
        return status;
    }
    memcpy((VOID *)(UINTN)copy, loaded_image->ImageBase, loaded_image->ImageSize);

    /* The same function at the same offset in the copy. */
    UINTN offset = (UINTN)copy - (UINTN)loaded_image->ImageBase;
    EFI_STATUS(EFIAPI * install_in_copy)(const CHAR8 *) =
        (EFI_STATUS(EFIAPI *)(const CHAR8 *))((UINTN)install_hooks_in_place + offset);
    return install_in_copy(status_text);
}
